"""The process group: which rank this process is, how many there are, and the collectives.

Ranks come from MPI (``mpiexec -n 4 python -m mpi4py script.py``): ``init()`` reads the world
from ``mpi4py`` when the process was started by ``mpiexec`` (or mpi4py is already imported),
and falls back to a world of one process otherwise, without importing mpi4py, so the same
script runs alone. The collectives pick their transport from the data, as every op of tinydl
picks its backend: NumPy arrays go through MPI, CuPy arrays through NCCL (``nccl.py``).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module
from ._mpi import mpi

__all__ = [
    "init",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "get_local_world_size",
    "is_main_process",
    "all_reduce",
    "broadcast",
    "barrier",
    "abort",
]

# world sizes set by the launchers: MPICH/Intel MPI (hydra), Open MPI, MVAPICH
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_OPS = ("sum", "mean", "max", "min")


class _World:
    """rank, size, local rank/size and the MPI communicator (None for a world of one)."""

    def __init__(self, comm=None):
        self.comm = comm
        if comm is None:
            self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
            return
        local = comm.Split_type(mpi().COMM_TYPE_SHARED)  # the ranks on this machine
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.nccl = {}  # device index -> NCCL communicator, made on first use


_state = {"world": None}


def _launched_size() -> int:
    for key in _LAUNCHER_SIZES:
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 1


def init(backend: str | None = None) -> None:
    """Join the process group (once; later calls do nothing).

    ``backend=None`` uses MPI when the process was started by ``mpiexec`` with more than one
    rank or mpi4py is already imported, and a world of one process otherwise; ``"mpi"``
    always uses MPI. (CuPy arrays are reduced through NCCL in either case, on demand.)
    """
    if _state["world"] is not None:
        return
    if backend not in (None, "mpi"):
        raise ValueError(f"init: backend must be None or 'mpi', got {backend!r}")
    use_mpi = backend == "mpi" or _launched_size() > 1 or "mpi4py.MPI" in sys.modules
    _state["world"] = _World(mpi().COMM_WORLD if use_mpi else None)


def is_initialized() -> bool:
    return _state["world"] is not None


def world() -> _World:
    """The group, joined first if need be."""
    init()
    return _state["world"]


def get_rank() -> int:
    """This process's rank, 0 to ``get_world_size() - 1``."""
    return world().rank


def get_world_size() -> int:
    return world().size


def get_local_rank() -> int:
    """The rank among the processes on this machine (which GPU to take, say)."""
    return world().local_rank


def get_local_world_size() -> int:
    return world().local_size


def is_main_process() -> bool:
    """Rank 0: the one that logs, draws progress bars and writes files."""
    return get_rank() == 0


def _array(x, op: str):
    array = x.data if isinstance(x, Tensor) else x
    xp = get_array_module(array)
    if not isinstance(array, xp.ndarray):
        raise TypeError(f"{op}: expected a Tensor or an array, got {type(x).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{op}: the array must be C-contiguous (reduced in place), got shape {array.shape} "
            f"with strides {array.strides}; pass a contiguous copy"
        )
    return array, xp is not np


def all_reduce(x, op: str = "sum"):
    """Reduce ``x`` (a Tensor or array) over all ranks, in place: every rank ends with the
    ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``. Returns ``x``."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(_OPS)}, got {op!r}")
    array, on_gpu = _array(x, "all_reduce")
    if op == "mean" and array.dtype.kind not in "fc":
        raise ValueError(f"all_reduce: op='mean' needs a floating array, got {array.dtype}")
    w = world()
    if w.size == 1:
        return x
    if on_gpu:
        from .nccl import all_reduce as nccl_all_reduce

        nccl_all_reduce(w, array, "sum" if op == "mean" else op)
    else:
        MPI = mpi()
        mpi_op = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]
        w.comm.Allreduce(MPI.IN_PLACE, array, op=mpi_op)
    if op == "mean":
        array /= w.size
    return x


def broadcast(x, src: int = 0):
    """Copy rank ``src``'s ``x`` (a Tensor or array) into every rank's ``x``, in place."""
    array, on_gpu = _array(x, "broadcast")
    w = world()
    if not 0 <= src < w.size:
        raise ValueError(f"broadcast: src must be a rank in 0..{w.size - 1}, got {src}")
    if w.size == 1:
        return x
    if on_gpu:
        from .nccl import broadcast as nccl_broadcast

        nccl_broadcast(w, array, src)
    else:
        w.comm.Bcast(array, root=src)
    return x


def barrier() -> None:
    """Wait until every rank gets here. (MPI busy-polls a core while it waits.)"""
    w = world()
    if w.comm is not None:
        w.comm.Barrier()


def abort(code: int = 1) -> None:
    """End every rank of the job now (after an error on this one), not only this process."""
    w = _state["world"]
    if w is not None and w.comm is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(0.2)  # NOTE: lets mpiexec forward the last lines before it tears down
        w.comm.Abort(code)
    sys.exit(code)
