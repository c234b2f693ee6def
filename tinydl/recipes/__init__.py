"""Recipes: whole applications built on the generic ``tinydl.training.Trainer``.

``classifier`` is the image classifier behind ``tinydl train | evaluate | predict`` (MNIST,
Fashion-MNIST or an image folder, the model zoo, the run folder); ``images`` finds and loads its
data. A recipe holds the choices of one task (statistics, augmentation, model names, file
layout); the loop itself stays task-free. Nothing here is imported by ``import tinydl``.
"""
