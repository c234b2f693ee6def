"""``DataLoader``: batches of Tensors from a dataset, shuffled by its own generator, optionally
loaded ahead by a background thread so that loading overlaps the training step, and optionally
delivered on a GPU, the copy of the next batch overlapping the compute on this one."""

from __future__ import annotations

import math
import queue
import threading
import weakref

import numpy as np

from ..autograd import Tensor
from ..backend import as_device, cupy_backend
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
    sampler : iterable of int, optional
        The indices to load, in order, with ``len`` (e.g. ``tinydl.distributed.
        DistributedSampler``: one rank's share); excludes ``shuffle``.
    collate_fn : callable, optional
        Turns a list of samples into a batch; ``default_collate`` when omitted.
    prefetch : int
        0 loads in the calling thread; ``k > 0`` runs a daemon thread that keeps up to ``k``
        batches ready. Errors in that thread are raised in the caller; dropping the iterator
        stops the thread.
    device : str or Device, optional
        Where the batches' Tensors are delivered: ``None``/``"cpu"`` (as loaded), or
        ``"cuda"``/``"cuda:N"``: each batch is copied through pinned memory on a side stream,
        one batch ahead, so the copy overlaps the compute on the previous batch.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: np.random.Generator | None = None,
        sampler=None,
        collate_fn=None,
        prefetch: int = 0,
        device=None,
    ):
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(prefetch, bool) or int(prefetch) != prefetch or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an int >= 0, got {prefetch!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True exclude each other")
        self.dataset, self.sampler = dataset, sampler
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        self.collate_fn = collate_fn
        self.prefetch = int(prefetch)
        self.device = as_device(device)
        if self.device.type != "cpu":
            cupy_backend.cupy_module(self.device)  # DeviceError now when CUDA is missing

    def __len__(self) -> int:
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _index_batches(self) -> list[np.ndarray]:
        if self.sampler is not None:
            order = np.fromiter(iter(self.sampler), np.int64)
        elif self.shuffle:
            gen = self.generator if self.generator is not None else default_generator()
            order = gen.permutation(len(self.dataset))
        else:
            order = np.arange(len(self.dataset))
        stop = len(self) * self.batch_size if self.drop_last else len(order)
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
            loaded = (self._load(b) for b in batches)
        else:
            loaded = _Prefetcher(self._load, batches, self.prefetch)
        if self.device.type == "cpu":
            return loaded
        return _ToDevice(loaded, len(batches), self.device)

    def __repr__(self) -> str:
        device = "" if self.device.type == "cpu" else f", device='{self.device}'"
        return (
            f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, prefetch={self.prefetch}"
            f"{device})"
        )


def _arrays(batch, out: list) -> list:
    """The arrays of a batch's Tensors, depth first (tuples, lists and dicts recurse)."""
    if isinstance(batch, Tensor):
        out.append(batch.data)
    elif isinstance(batch, (tuple, list)):
        for b in batch:
            _arrays(b, out)
    elif isinstance(batch, dict):
        for b in batch.values():
            _arrays(b, out)
    return out


def _rebuild(batch, arrays):
    """``batch`` with its Tensors replaced, in ``_arrays`` order, by Tensors of ``arrays``."""
    if isinstance(batch, Tensor):
        return Tensor(next(arrays))
    if isinstance(batch, (tuple, list)):
        out = [_rebuild(b, arrays) for b in batch]
        return tuple(out) if isinstance(batch, tuple) else out
    if isinstance(batch, dict):
        return {k: _rebuild(b, arrays) for k, b in batch.items()}
    return batch


class _ToDevice:
    """Batches from ``loaded`` delivered on a CUDA ``device``: when batch k is handed out, the
    copy of batch k+1 is already queued on a side stream (``cupy_backend.AsyncCopier``), and
    the compute stream waits for batch k's copy on the GPU, never in Python."""

    def __init__(self, loaded, count: int, device):
        self._loaded = iter(loaded)
        self._remaining = count
        self._copier = cupy_backend.AsyncCopier(device)
        self._next = self._stage()

    def _stage(self):
        try:
            batch = next(self._loaded)
        except StopIteration:
            self._copier.close()
            return None
        arrays, ticket = self._copier.copy(_arrays(batch, []))
        return _rebuild(batch, iter(arrays)), ticket

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return self._remaining

    def __next__(self):
        if self._next is None:
            raise StopIteration
        batch, ticket = self._next
        self._next = self._stage()  # queue the next copy before the caller computes on this batch
        self._copier.wait(ticket)
        self._remaining -= 1
        return batch


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
