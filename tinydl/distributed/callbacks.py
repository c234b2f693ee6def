"""Trainer callbacks for data-parallel runs."""

from __future__ import annotations

import numpy as np

from ..training import Callback
from . import group

__all__ = ["GlobalTrainMetrics"]


class GlobalTrainMetrics(Callback):
    """Make an epoch's ``train_*`` numbers those of the whole job, not of one rank's share:
    the mean over ranks of each ``train_`` metric (the shares are equal, so this is the mean over
    every image) and the sum of ``images_per_second``. One all-reduce per epoch."""

    def on_epoch_end(self, trainer, epoch: int, record: dict) -> None:
        keys = sorted(k for k in record if k.startswith("train_"))
        values = np.array([record[k] for k in keys] + [record["images_per_second"]], np.float64)
        group.all_reduce(values)
        size = group.get_world_size()
        record.update({k: float(v) / size for k, v in zip(keys, values)})
        record["images_per_second"] = float(values[-1])
