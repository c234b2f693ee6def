"""Weights of the zoo's ``LeNet5`` and ``MnistCNN`` trained on MNIST by this project's own
``tinydl train`` command, shipped in the package: ``LeNet5(pretrained=True)`` works on a fresh
install with no dataset and no training.

Each model has two files here: ``<stem>.safetensors``, its state dict (read with tinydl's checked
safetensors reader: loading never runs code), and ``<stem>.json``, the one record of the weights:
how they were made (the exact command, seed, date, tinydl version, training time), how good they
are (test accuracy and loss on the 10,000 MNIST test images) and how an input must be prepared
(normalisation ``mean``/``std``, ``classes``, ``preprocess``), in the shape of the metadata that
``tinydl.recipes.classifier.load_run`` returns. ``scripts/ship_pretrained.py`` writes both from
a run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...io import load

__all__ = ["PRETRAINED", "pretrained_meta", "pretrained_state", "load_pretrained_into"]

HERE = Path(__file__).resolve().parent
# the zoo's model name (tinydl train --model) -> the stem of its two files here
PRETRAINED = {"lenet": "lenet5", "cnn": "mnistcnn"}


def _stem(name: str) -> str:
    if name not in PRETRAINED:
        raise ValueError(
            f"no pretrained weights named {name!r}; choose one of {', '.join(PRETRAINED)}"
        )
    return PRETRAINED[name]


def pretrained_meta(name: str) -> dict:
    """The record of the pretrained ``name`` (``"lenet"`` or ``"cnn"``), a fresh dict."""
    return json.loads((HERE / f"{_stem(name)}.json").read_text(encoding="utf-8"))


def pretrained_state(name: str) -> dict:
    """The state dict (NumPy arrays) of the pretrained ``name``."""
    return load(HERE / f"{_stem(name)}.safetensors")


def load_pretrained_into(model, name: str, **architecture):
    """Load the weights of ``name`` into ``model``, built with the ``architecture`` arguments,
    each of which must be what the weights were trained with (else a ``ValueError`` naming it)."""
    trained = pretrained_meta(name)["architecture"]
    for arg, value in architecture.items():
        if value != trained[arg]:
            cls = type(model).__name__
            raise ValueError(
                f"{cls}(pretrained=True) loads weights trained with {arg}={trained[arg]!r}, "
                f"not {arg}={value!r}: leave {arg} out, or build {cls}({arg}={value!r}) "
                "without pretrained=True and train it"
            )
    model.load_state_dict(pretrained_state(name))
    return model
