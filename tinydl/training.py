"""The generic training loop: ``Trainer`` fits any model to any loader with any loss.

Per epoch it trains, validates, appends a row to ``history`` and, given a run folder ``out``,
keeps ``last.safetensors`` and ``best.safetensors`` (atomic, via ``tinydl.io``). Ctrl-C saves
``interrupted.safetensors`` and re-raises; ``fit(..., resume=True)`` continues from
``last.safetensors`` and ends with the weights an uninterrupted run would have had, because
shuffling and dropout are seeded per epoch. ``write_metrics`` writes ``metrics.json`` and a plot
of the curves. Losses and metrics are summed on the device of the data and copied to the host
once per epoch, so the loop does not stall a GPU at every step.

>>> trainer = Trainer(model, optim.Adam(model.parameters()), F.cross_entropy,
...                   metrics={"accuracy": count_correct}, out="runs/a")  # doctest: +SKIP
>>> history = trainer.fit(train_loader, val_loader, epochs=3)  # doctest: +SKIP

Options plug in as ``Callback`` objects (``Trainer(callbacks=[...])``), not as branches in this
loop: data-parallel training would shard the loader in ``on_epoch_start`` and all-reduce the
gradients in ``on_after_backward``; a profiler would time the steps between ``on_epoch_start``
and ``on_batch_end``. The image classifier behind ``tinydl train`` is a recipe on top of this
loop: ``tinydl.recipes.classifier``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import functional as F
from .backend import get_array_module, to_numpy
from .grad_mode import no_grad
from .io import load_checkpoint, save_checkpoint
from .io.atomic import atomic_write
from .progress import progress_bar
from .tensor import manual_seed

__all__ = ["Trainer", "Callback", "evaluate", "count_correct"]


def _quiet(*args, **kwargs) -> None:
    """The log of a process that is not the main one."""


def count_correct(output, target):
    """How many rows of ``output`` (logits) have their largest value at ``target``: the batch
    sum behind an accuracy metric. Arrays in, an array on their device out."""
    return (output.argmax(1) == target).sum()


class _Totals:
    """Batch sums of the loss and of each metric, kept on the device of the data."""

    def __init__(self, metrics: dict):
        self.metrics, self.sums, self.count = metrics, None, 0

    def add(self, loss, output, target) -> None:
        n = len(target)  # a shape: no read from the device
        xp = get_array_module(loss.data)
        values = [loss.data.astype(xp.float64) * n]
        values += [
            xp.asarray(fn(output.data, target.data), xp.float64) for fn in self.metrics.values()
        ]
        batch = xp.stack(values)
        self.sums = batch if self.sums is None else self.sums + batch
        self.count += n

    def means(self) -> dict:
        """``{"loss": ..., <metric>: ...}`` per sample: the one copy to the host."""
        if self.sums is None:
            return {}
        values = to_numpy(self.sums) / self.count
        return dict(zip(["loss", *self.metrics], (float(v) for v in values)))


def evaluate(model, loader, loss_fn=F.cross_entropy, metrics=None, predict=None) -> dict:
    """Mean loss and metrics of ``model`` over ``loader``, in eval mode and without a graph.

    ``metrics`` maps names to batch-sum functions ``fn(output, target) -> array`` (e.g.
    ``count_correct``). With ``predict`` (``output array -> array``, e.g. an argmax) the result
    also holds ``pred`` and ``target``: NumPy arrays over the whole loader. Everything is
    accumulated on the device of the data and copied to the host once, at the end.
    """
    was_training = model.training
    model.eval()
    totals, preds, targets = _Totals(metrics or {}), [], []
    with no_grad():
        for x, y in loader:
            output = model(x)
            totals.add(loss_fn(output, y), output, y)
            if predict is not None:
                preds.append(predict(output.data))
                targets.append(y.data)
    model.train(was_training)
    result = totals.means()
    if predict is not None:
        xp = get_array_module(*preds)
        result["pred"], result["target"] = (to_numpy(xp.concatenate(a)) for a in (preds, targets))
    return result


class Callback:
    """Hooks into ``Trainer.fit``: subclass and override what you need (all do nothing here).

    Each hook gets the trainer, so it sees ``trainer.model``, ``optimizer``, ``history`` and
    ``epoch`` (the last finished epoch). Hooks run in the order of ``Trainer(callbacks=...)``.
    """

    def on_fit_start(self, trainer) -> None:
        """Before the first epoch (after a resume has restored the state)."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """After the epoch's seeding, before its first batch (e.g. a sampler's ``set_epoch``)."""

    def on_after_backward(self, trainer) -> None:
        """Gradients are in ``.grad``, the optimizer has not stepped yet (e.g. all-reduce them
        across processes, clip them)."""

    def on_batch_end(self, trainer, batch: int, loss) -> None:
        """After the optimizer (and scheduler) step; ``loss`` is the batch's loss Tensor, still on
        its device (reading it, e.g. ``loss.item()``, waits for the device)."""

    def on_epoch_end(self, trainer, epoch: int, record: dict) -> None:
        """After validation; ``record`` is the epoch's history row, and keys added to it are
        saved with it."""

    def on_fit_end(self, trainer) -> None:
        """After the last epoch."""


class Trainer:
    """Epochs of training and validation of ``model`` with ``optimizer`` on ``loss_fn``.

    Parameters
    ----------
    model : Module
    optimizer : Optimizer
    loss_fn : callable
        ``loss_fn(output, target) -> scalar Tensor``, the mean over the batch.
    scheduler : LRScheduler, optional
        Stepped after every optimizer step (per-batch schedules such as ``OneCycleLR``).
    metrics : dict of str to callable, optional
        Batch-sum functions ``fn(output, target) -> array``; the history holds their means as
        ``train_<name>`` and ``val_<name>``.
    out : str or os.PathLike, optional
        Run folder for the checkpoints and ``metrics.json``; without it nothing is written.
    meta : dict, optional
        Plain values saved in every checkpoint (what a reader needs to rebuild the model).
    seed : int
        Epoch ``e`` reseeds ``td.manual_seed(seed * 1000 + e)`` (dropout, augmentation) and the
        train loader's ``generator`` (when it has one, as ``DataLoader``) from ``(seed, e)``.
    monitor, mode : str
        The history key that picks ``best.safetensors`` and whether ``"min"`` or ``"max"`` of it
        is best.
    callbacks : sequence of Callback
        The extension point: distributed data-parallel training, profiling and the like plug
        in here, as hooks around the batch and the epoch, without a change to this loop.
    progress : bool, optional
        A progress bar per epoch (None: when stderr is a terminal and tqdm is installed).
    plots : bool
        ``write_metrics`` also draws ``curves.png`` (when matplotlib is installed).
    log : callable
        Receives one line per epoch and the notes on resuming and interrupting.
    main_process : bool
        False on every rank but 0 of a data-parallel job (``tinydl.distributed``): that rank
        writes no file, logs nothing and draws no bar, but still resumes from ``out``.
    """

    def __init__(
        self,
        model,
        optimizer,
        loss_fn=F.cross_entropy,
        *,
        scheduler=None,
        metrics=None,
        out=None,
        meta=None,
        seed: int = 0,
        monitor: str = "val_loss",
        mode: str = "min",
        callbacks=(),
        progress: bool | None = None,
        plots: bool = True,
        log=print,
        main_process: bool = True,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"Trainer: mode must be 'min' or 'max', got {mode!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.scheduler, self.metrics = scheduler, dict(metrics or {})
        self.out = None if out is None else Path(out)
        self.meta, self.seed, self.monitor, self.mode = dict(meta or {}), seed, monitor, mode
        self.callbacks, self.plots, self.main_process = list(callbacks), plots, main_process
        self.log = log if main_process else _quiet
        self.progress = progress if main_process else False
        self.history: list[dict] = []
        self.epoch, self.epochs = 0, 0  # the last finished epoch, and the planned number

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, epochs: int = 1, resume: bool = False) -> list:
        """Train until epoch ``epochs``; returns ``history`` (one dict per epoch)."""
        self.epochs = epochs
        splits = ("train", "val") if val_loader is not None else ("train",)
        keys = [f"{s}_{k}" for s in splits for k in ["loss", *self.metrics]]
        if self.monitor not in keys:
            raise ValueError(f"Trainer: monitor={self.monitor!r} is none of {keys}")
        if self.writes:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        self._call("on_fit_start")
        try:
            for epoch in range(self.epoch + 1, epochs + 1):
                self._seed_epoch(train_loader, epoch)
                self._call("on_epoch_start", epoch)
                train = self._train_epoch(train_loader, epoch)
                val = self.evaluate(val_loader) if val_loader is not None else {}
                self._end_epoch(epoch, train, val)
        except KeyboardInterrupt:
            if self.writes:
                self.save("interrupted.safetensors")
                self.log(
                    f"\ninterrupted: saved {self.out / 'interrupted.safetensors'}; resume from "
                    f"{self.out / 'last.safetensors'} with --resume (fit(..., resume=True))"
                )
            raise
        self._call("on_fit_end")
        return self.history

    def _seed_epoch(self, loader, epoch: int) -> None:
        # NOTE: seeded per epoch, not once per run, so that every epoch draws a new order and a
        # resumed run repeats exactly what an uninterrupted one would have done.
        if hasattr(loader, "generator"):
            loader.generator = np.random.default_rng([self.seed, epoch])
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):  # a DistributedSampler
            loader.sampler.set_epoch(epoch)
        manual_seed(self.seed * 1000 + epoch)

    def _train_epoch(self, loader, epoch: int) -> dict:
        self.model.train()
        totals, start = _Totals(self.metrics), time.perf_counter()
        bar = progress_bar(loader, desc=f"epoch {epoch}/{self.epochs}", enabled=self.progress)
        for i, (x, y) in enumerate(bar):
            output = self.model(x)
            loss = self.loss_fn(output, y)
            self.optimizer.zero_grad()
            loss.backward()
            self._call("on_after_backward")
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            totals.add(loss, output, y)
            self._call("on_batch_end", i, loss)
            if not bar.disable and i % 10 == 0:  # a drawn bar reads back every 10th step only
                rate = totals.count / (time.perf_counter() - start)
                shown = {k: f"{v:.4f}" for k, v in totals.means().items()}
                bar.set_postfix(**shown, img_s=f"{rate:.0f}")
        bar.close()
        seconds = time.perf_counter() - start
        means = totals.means()
        return {**means, "seconds": seconds, "images_per_second": totals.count / seconds}

    def _end_epoch(self, epoch: int, train: dict, val: dict) -> None:
        names = ["loss", *self.metrics]
        record = {"epoch": epoch}
        record.update({f"train_{k}": train[k] for k in names if k in train})
        record.update({f"val_{k}": val[k] for k in names if k in val})
        record.update(seconds=train["seconds"], images_per_second=train["images_per_second"])
        self._call("on_epoch_end", epoch, record)
        best = self.best_score()
        self.history.append(record)
        self.epoch = epoch
        if self.writes:
            self.save("last.safetensors")
            if best is None or self._better(record[self.monitor], best):
                self.save("best.safetensors")
        self.log(self._summary(record))

    def _summary(self, r: dict) -> str:
        parts = [
            f"{split} " + " ".join(f"{k} {r[f'{split}_{k}']:.4f}" for k in ["loss", *self.metrics])
            for split in ("train", "val")
            if f"{split}_loss" in r
        ]
        speed = f"{r['seconds']:.1f} s, {r['images_per_second']:.0f} img/s"
        return f"epoch {r['epoch']}: " + " | ".join([*parts, speed])

    def evaluate(self, loader, predict=None) -> dict:
        """``evaluate`` with this trainer's model, loss and metrics."""
        return evaluate(self.model, loader, self.loss_fn, self.metrics, predict)

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # -- the run folder ------------------------------------------------------------------------
    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (it has one and is the main process)."""
        return self.out is not None and self.main_process

    def _better(self, value: float, than: float) -> bool:
        return value < than if self.mode == "min" else value > than

    def best_score(self) -> float | None:
        """The best ``monitor`` value in the history so far (None before the first epoch)."""
        scores = [h[self.monitor] for h in self.history]
        return (min if self.mode == "min" else max)(scores) if scores else None

    def save(self, name: str) -> None:
        """Checkpoint the model, optimizer, scheduler, history and ``meta`` to ``out/name``."""
        save_checkpoint(
            self.out / name,
            self.model.state_dict(),
            self.optimizer.state_dict(),
            None if self.scheduler is None else self.scheduler.state_dict(),
            epoch=self.epoch,
            metrics={"history": self.history},
            meta={**self.meta, "epochs": self.epochs},
        )

    def _resume(self) -> None:
        path = self.out / "last.safetensors" if self.out is not None else None
        if path is None or not path.exists():
            return
        ckpt = load_checkpoint(path)
        meta = ckpt["meta"]
        planned = meta.get("epochs", meta.get("config", {}).get("epochs"))
        if planned != self.epochs:
            raise ValueError(
                f"resume: the run in {self.out} was planned for {planned} epochs (its "
                f"learning-rate schedule depends on it); pass --epochs {planned} (epochs={planned})"
            )
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler_state"])
        self.history, self.epoch = ckpt["metrics"]["history"], ckpt["epoch"]
        self.log(f"resuming {self.out} after epoch {self.epoch}")

    def load_best(self) -> None:
        """Put the weights of ``out/best.safetensors`` into the model."""
        self.model.load_state_dict(load_checkpoint(self.out / "best.safetensors")["model_state"])

    def write_metrics(self, results: dict) -> dict:
        """Write ``{**results, "history": ...}`` to ``out/metrics.json`` (atomically) and, with
        ``plots``, the curves to ``out/curves.png``; returns that dict."""
        results = {**results, "history": self.history}
        if not self.writes:
            return results
        atomic_write(self.out / "metrics.json", json.dumps(results, indent=2), fn="write_metrics")
        from .plots import HAVE_MATPLOTLIB, plot_history

        if self.plots and HAVE_MATPLOTLIB:
            plot_history(self.history, self.out / "curves.png")
        return results
