"""Collectives on CuPy arrays through NCCL, as ChainerMN did: rank 0 makes the communicator's
id, MPI broadcasts it, every rank joins with the GPU its array lives on. One communicator per
device, made on the first collective there. (NCCL wants one GPU per rank: give rank ``r`` the
device ``get_local_rank() % device_count``.)"""

from __future__ import annotations

import numpy as np

from ..backend.cupy_backend import cupy_module, nccl_module

__all__ = ["all_reduce", "broadcast", "nccl_dtype"]

_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}
_DTYPES.update(int32="NCCL_INT32", int64="NCCL_INT64", uint8="NCCL_UINT8")
_OPS = {"sum": "NCCL_SUM", "max": "NCCL_MAX", "min": "NCCL_MIN"}
_ID_BYTES = 128  # NCCL_UNIQUE_ID_BYTES: get_unique_id() gives that many small integers


def nccl_dtype(nccl, dtype) -> int:
    """NCCL's code for a NumPy/CuPy dtype; ``TypeError`` naming the dtype if it has none."""
    name = np.dtype(dtype).name
    if name not in _DTYPES:
        raise TypeError(f"NCCL collectives take {', '.join(_DTYPES)} arrays, got {name}")
    return getattr(nccl, _DTYPES[name])


def _unique_id(world, nccl) -> tuple:
    """Rank 0's fresh NCCL id, broadcast to all ranks as plain integers (no pickle)."""
    uid = np.zeros(_ID_BYTES, np.int64)
    if world.rank == 0:
        made = nccl.get_unique_id()
        uid = np.array(made, np.int64)
    world.comm.Bcast(uid, root=0)
    return tuple(int(v) for v in uid)


def communicator(world, array):
    """The NCCL communicator of ``array``'s GPU, made (collectively) on first use."""
    device = array.device.id
    if device not in world.nccl:
        cp, nccl = cupy_module(), nccl_module()
        uid = _unique_id(world, nccl)
        with cp.cuda.Device(device):
            world.nccl[device] = nccl.NcclCommunicator(world.size, uid, world.rank)
    return world.nccl[device]


def all_reduce(world, array, op: str) -> None:
    """In-place all-reduce of a contiguous CuPy array on its device's current stream."""
    nccl = nccl_module()
    comm = communicator(world, array)
    stream = cupy_module().cuda.get_current_stream().ptr
    code, red = nccl_dtype(nccl, array.dtype), getattr(nccl, _OPS[op])
    comm.allReduce(array.data.ptr, array.data.ptr, array.size, code, red, stream)


def broadcast(world, array, src: int) -> None:
    """In-place broadcast of a contiguous CuPy array from rank ``src``."""
    nccl = nccl_module()
    comm = communicator(world, array)
    stream = cupy_module().cuda.get_current_stream().ptr
    code = nccl_dtype(nccl, array.dtype)
    comm.broadcast(array.data.ptr, array.data.ptr, array.size, code, src, stream)
