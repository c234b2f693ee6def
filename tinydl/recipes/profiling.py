"""``tinydl train --profile N``: ``td.profile()`` around N steps of the real training loop.

The run is set up as ``run_training`` sets it up (data, model, optimizer, schedule) and trained by
the same ``Trainer``, with no run folder: nothing is written. A ``Callback`` opens the profile
after the first step (a warm-up: it compiles the Numba kernels) and stops the loop after N more;
the loader is wrapped so that waiting for a batch is a ``data`` row.
"""

from __future__ import annotations

import contextlib

from .. import functional as F
from ..profiler import Profile, profile, region
from ..training import Callback, Trainer
from .classifier import METRICS, TrainConfig, build_run

__all__ = ["profile_training"]


class _Done(Exception):
    """Raised by the callback to leave ``Trainer.fit`` after the profiled steps."""


class _ProfileSteps(Callback):
    def __init__(self, steps: int, stack: contextlib.ExitStack):
        self.steps, self.stack, self.prof = steps, stack, None

    def on_batch_end(self, trainer, batch: int, loss) -> None:
        if batch == 0:  # the warm-up step ends here
            self.prof = self.stack.enter_context(profile())
        elif batch == self.steps:
            self.stack.close()
            raise _Done


class _TimedLoader:
    """The loader, with each wait for a batch a ``DataLoader.next`` row in the ``data`` pass."""

    def __init__(self, loader):
        self.loader = loader

    @property
    def generator(self):  # the Trainer seeds the shuffling through it
        return self.loader.generator

    @generator.setter
    def generator(self, value):
        self.loader.generator = value

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            with region(self.loader, "next", "data"):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def profile_training(cfg: TrainConfig, steps: int, log=print) -> Profile:
    """Profile ``steps`` training steps of the run ``cfg`` describes, after one warm-up step."""
    if steps < 1:
        raise ValueError(f"--profile must be positive, got {steps}")
    _, (train_loader, *_), _, model, opt, sched = build_run(cfg, log)
    if len(train_loader) < steps + 1:
        raise ValueError(
            f"--profile {steps} needs {steps + 1} batches (one warm-up); the training split has "
            f"{len(train_loader)} of {cfg.batch_size} images: raise --limit or lower --profile"
        )
    with contextlib.ExitStack() as stack:  # closes the profile if the loop raises
        callback = _ProfileSteps(steps, stack)
        trainer = Trainer(
            model, opt, F.cross_entropy, scheduler=sched, metrics=METRICS, seed=cfg.seed,
            monitor="train_loss", callbacks=[callback], progress=False, plots=False, log=log,
        )  # fmt: skip
        try:
            trainer.fit(_TimedLoader(train_loader), None, epochs=1)
        except _Done:
            pass
    return callback.prof
