"""Micro-batching: requests that arrive while the model is busy go through it together.

There is no worker thread: the thread that gets the model next runs everything queued so far
as one batch and hands each waiting thread its own result. One request alone runs at once
(batch of one); under load, the batch grows with the queue, so the model runs once per batch
instead of once per request. The model is never run by two threads at the same time.
"""

from __future__ import annotations

import threading

__all__ = ["Batcher"]


class _Slot:
    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item):
        self.item, self.result, self.error = item, None, None
        self.done = threading.Event()


class Batcher:
    """``batcher(item)`` returns ``fn(items)[i]`` for its own item, where ``fn`` (a list of
    items -> a list of results, in order) sees the items of up to ``max_batch`` concurrent
    callers at once. ``batches``, ``items`` and ``largest`` count the calls of ``fn``, the items
    they took and the most items one call took."""

    def __init__(self, fn, max_batch: int = 64):
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self._fn, self.max_batch = fn, max_batch
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()  # held while fn runs
        self.batches = self.items = self.largest = 0

    def __call__(self, item):
        slot = _Slot(item)
        with self._queue_lock:
            self._queue.append(slot)
        # NOTE: a slot is either queued or in a batch that sets ``done`` before releasing the
        # model lock, so a thread that gets the lock finds its slot done or takes it along
        while not slot.done.is_set():
            with self._model_lock:
                if not slot.done.is_set():
                    self._run_queued()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run_queued(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        self.batches, self.items = self.batches + 1, self.items + len(batch)
        self.largest = max(self.largest, len(batch))
        try:
            results = self._fn([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function gave {len(results)} results for {len(batch)}")
            for slot, result in zip(batch, results):
                slot.result = result
        except BaseException as exc:  # every waiting caller sees the failure
            for slot in batch:
                slot.error = exc
        finally:
            for slot in batch:
                slot.done.set()
