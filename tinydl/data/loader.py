"""``DataLoader``: batches of Tensors from a dataset, shuffled by its own generator, optionally
loaded ahead by a background thread so that loading overlaps the training step."""

from __future__ import annotations

import math
import queue
import threading
import weakref

import numpy as np

from ..autograd import Tensor
from ..tensor import default_generator

__all__ = ["DataLoader", "default_collate", "to_tensor"]


def to_tensor(array) -> Tensor:
    """Wrap a stacked field: floating -> float32, signed/wide integers -> int64; uint8 and bool
    are kept (raw image bytes; ``transforms.ToTensor`` makes float32 images)."""
    if isinstance(array, Tensor):
        return array
    array = np.asarray(array)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu" and array.dtype not in (np.uint8, np.int64):
        array = array.astype(np.int64)
    return Tensor(np.ascontiguousarray(array))


def default_collate(samples: list):
    """Stack a list of samples field by field into Tensors (tuples, lists and dicts recurse)."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    return to_tensor(
        np.stack([s.data if isinstance(s, Tensor) else np.asarray(s) for s in samples])
    )


def _collate_arrays(batch):
    if isinstance(batch, (tuple, list)):
        return tuple(to_tensor(a) for a in batch)
    return to_tensor(batch)


class DataLoader:
    """Iterate over ``dataset`` in batches of Tensors.

    Parameters
    ----------
    dataset : Dataset
        Indexable with ``len``. When it has ``get_batch(indices)`` (and no ``collate_fn`` is
        given) whole batches are fetched and transformed at once; otherwise items are fetched one
        by one with ``dataset[i]`` and stacked by ``collate_fn``.
    batch_size : int
    shuffle : bool
        A new permutation each epoch, drawn from ``generator`` when ``iter`` is called.
    drop_last : bool
        Drop the last batch when it is smaller than ``batch_size``.
    generator : numpy.random.Generator, optional
        Source of the shuffling; ``td.default_generator()`` when omitted.
    collate_fn : callable, optional
        Turns a list of samples into a batch; ``default_collate`` when omitted.
    prefetch : int
        0 loads in the calling thread; ``k > 0`` runs a daemon thread that keeps up to ``k``
        batches ready. Errors in that thread are raised in the caller; dropping the iterator
        stops the thread.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: np.random.Generator | None = None,
        collate_fn=None,
        prefetch: int = 0,
    ):
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(prefetch, bool) or int(prefetch) != prefetch or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an int >= 0, got {prefetch!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        self.collate_fn = collate_fn
        self.prefetch = int(prefetch)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _index_batches(self) -> list[np.ndarray]:
        n = len(self.dataset)
        if self.shuffle:
            gen = self.generator if self.generator is not None else default_generator()
            order = gen.permutation(n)
        else:
            order = np.arange(n)
        stop = len(self) * self.batch_size if self.drop_last else n
        return [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def _load(self, indices: np.ndarray):
        if self.collate_fn is None and hasattr(self.dataset, "get_batch"):
            return _collate_arrays(self.dataset.get_batch(indices))
        samples = [self.dataset[int(i)] for i in indices]
        return (self.collate_fn or default_collate)(samples)

    def __iter__(self):
        # NOTE: the epoch's order is drawn here, in the caller's thread, so shuffling consumes
        # the generator in the same place whether or not a prefetch thread runs.
        batches = self._index_batches()
        if self.prefetch == 0:
            return (self._load(b) for b in batches)
        return _Prefetcher(self._load, batches, self.prefetch)

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, prefetch={self.prefetch})"
        )


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _work(load, batches, q: queue.Queue, stop: threading.Event) -> None:
    # Module-level on purpose: the thread must not hold the iterator, or dropping it could
    # never trigger the shutdown.
    try:
        for indices in batches:
            if stop.is_set() or not _put(q, load(indices), stop):
                return
        _put(q, _END, stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
        _put(q, _Failure(exc), stop)


def _shutdown(stop: threading.Event, q: queue.Queue, thread: threading.Thread) -> None:
    stop.set()
    while True:  # free a worker blocked on a full queue
        try:
            q.get_nowait()
        except queue.Empty:
            break
    if thread is not threading.current_thread():
        thread.join(timeout=10)


class _Prefetcher:
    """Iterator fed by a daemon thread through a bounded queue."""

    def __init__(self, load, batches, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        stop = threading.Event()
        thread = threading.Thread(
            target=_work,
            args=(load, batches, self._queue, stop),
            name="tinydl-prefetch",
            daemon=True,
        )
        thread.start()
        self._close = weakref.finalize(self, _shutdown, stop, self._queue, thread)
        self._remaining = len(batches)
        self._done = False

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return self._remaining

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END or isinstance(item, _Failure):
            self._done = True
            self.close()
            if item is _END:
                raise StopIteration
            raise item.exc
        self._remaining -= 1
        return item

    def close(self) -> None:
        """Stop the worker thread (also done when the iterator is garbage-collected)."""
        self._done = True
        self._close()
