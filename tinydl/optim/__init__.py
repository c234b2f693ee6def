"""Optimizers, learning-rate schedules and gradient clipping (``from tinydl import optim``).

>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # doctest: +SKIP
>>> sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=1000)  # doctest: +SKIP
"""

from . import lr_scheduler
from .adagrad import Adagrad, adagrad_update
from .adam import Adam, AdamW, adam_update
from .clip import NonFiniteGradError, clip_grad_norm_, clip_grad_value_
from .lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    StepLR,
)
from .optimizer import Optimizer, OptimizerStateError
from .rmsprop import RMSprop, rmsprop_update
from .sgd import SGD, sgd_update

__all__ = [
    "Optimizer",
    "OptimizerStateError",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "sgd_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "lr_scheduler",
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearLR",
    "OneCycleLR",
    "clip_grad_norm_",
    "clip_grad_value_",
    "NonFiniteGradError",
]
