"""``DistributedDataParallel``: one model replica per rank, gradients averaged after backward.

At construction rank 0's parameters and buffers are broadcast, so every replica starts equal.
Each parameter gets a gradient hook; the first one to fire in a backward pass queues one
callback (``autograd.queue_callback``) that runs when the pass has written every ``.grad``.
It copies the gradients into flat buckets (one per dtype and device, up to ``bucket_cap_mb``),
all-reduces each bucket in one call (MPI for NumPy, NCCL for CuPy) and points every ``.grad``
at its slice of the bucket, averaged: no copy back. One call per bucket instead of one per
array is what keeps the all-reduce cheap (MnistCNN's 10 arrays: ``python -m benchmarks
distributed``).

Each bucket carries one extra slot per parameter, 1 where the rank has a gradient for it: a
parameter no rank used keeps ``.grad`` None, one used on some ranks gets the average with
zeros for the others. Every rank must run backward the same number of times, else the others
wait in the all-reduce.
"""

from __future__ import annotations

import contextlib

from ..autograd import Tensor, queue_callback
from ..backend import get_array_module
from ..layers import Module
from . import group

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """A flat buffer for some parameters' gradients, and a used-flag per parameter after them."""

    def __init__(self, params: list):
        xp = get_array_module(params[0].data)
        sizes = [p.data.size for p in params]
        self.params, self.total = params, sum(sizes)
        self.flat = xp.zeros(self.total + len(params), params[0].dtype)
        self.views, start = [], 0
        for p, n in zip(params, sizes):
            self.views.append(self.flat[start : start + n].reshape(p.shape))
            start += n

    def reduce(self, size: int) -> None:
        used = self.flat[self.total :]
        for i, (p, view) in enumerate(zip(self.params, self.views)):
            if p.grad is None:
                view[...] = 0
                used[i] = 0
            else:
                if p.grad.data is not view:
                    view[...] = p.grad.data
                used[i] = 1
        group.all_reduce(self.flat)
        self.flat[: self.total] *= 1 / size
        counts = used.tolist()
        for p, view, count in zip(self.params, self.views, counts):
            p.grad = Tensor.from_array(view) if count else None


def _buckets(params: list, cap_bytes: int) -> list[_Bucket]:
    """Group ``params`` in order into buckets of one dtype and device, each up to ``cap_bytes``
    (a single larger parameter gets a bucket of its own)."""
    out, current, size = [], [], 0
    for p in params:
        nbytes = p.data.nbytes
        same = current and (p.dtype, p.device) == (current[0].dtype, current[0].device)
        if current and (not same or size + nbytes > cap_bytes):
            out.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        out.append(_Bucket(current))
    return out


class DistributedDataParallel(Module):
    """Data-parallel training of ``module``: run one process per rank (``mpiexec -n N``), feed
    each its own shard of every batch (``DistributedSampler``), call ``backward`` and step the
    optimizer as usual. The gradients are the average over ranks, as if one process had the
    whole batch.

    Parameters
    ----------
    module : Module
        The model; ``ddp.module`` keeps it (save its ``state_dict``, not the wrapper's).
    bucket_cap_mb : float
        Largest bucket in MiB (PyTorch's default 25); ``0`` reduces each array on its own.
    broadcast_buffers : bool
        Also copy rank 0's buffers (running statistics) to all ranks before each forward in
        training mode, as PyTorch does; else only at construction.
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25, broadcast_buffers: bool = True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: module must be a Module, got {type(module).__name__}"
            )
        if bucket_cap_mb < 0:
            raise ValueError(
                f"DistributedDataParallel: bucket_cap_mb must be >= 0, got {bucket_cap_mb}"
            )
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.world_size = group.get_world_size()
        for t in [*module.parameters(), *module.buffers()]:
            group.broadcast(t.data)
        params = [p for p in module.parameters() if p.requires_grad]
        # NOTE: reversed, as PyTorch: the last layers' gradients are computed first
        self._buckets = _buckets(params[::-1], int(bucket_cap_mb * 2**20))
        self._sync = True
        self._handles = [p.register_hook(self._on_grad) for p in params]

    def forward(self, *args, **kwargs):
        if self.training and self.broadcast_buffers and self.world_size > 1:
            for b in self.module.buffers():
                group.broadcast(b.data)
        return self.module(*args, **kwargs)

    def _on_grad(self, grad):
        if self._sync:
            queue_callback(
                self.reduce_gradients
            )  # queued once per pass: callbacks are deduplicated

    def reduce_gradients(self) -> None:
        """Average every parameter's ``.grad`` over the ranks (run for you after backward)."""
        if self.world_size > 1:
            for bucket in self._buckets:
                bucket.reduce(self.world_size)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate local gradients only; the first one outside
        reduces everything accumulated (gradient accumulation without extra communication)."""
        before, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = before

    def extra_repr(self) -> str:
        return f"world_size={self.world_size}, buckets={len(self._buckets)}"
