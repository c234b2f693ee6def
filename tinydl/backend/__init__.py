"""Backends: which array module (NumPy or CuPy) holds a tensor's data.

The backend is read off the data (``get_array_module``), never from a global flag.
NumPy is always present; CuPy is imported only by ``cupy_backend``, and only when CUDA is asked
for (a ``"cuda"`` device, ``td.cuda.is_available()``, a CuPy array).
"""

from __future__ import annotations

import numpy as np

from . import cupy_backend, kernels, memory, threads
from .device import (
    CPU,
    Device,
    as_array,
    as_device,
    get_array_module,
    get_device,
    is_device_array,
    to_numpy,
    transfer,
)
from .kernels import (
    active_kernels,
    get_im2col_budget,
    im2col_budget,
    set_im2col_budget,
    use_kernels,
)
from .memory import retain_freed_memory, retaining_freed_memory
from .threads import get_num_threads, set_num_threads

__all__ = [
    "CPU",
    "Device",
    "active_kernels",
    "as_array",
    "as_device",
    "cupy_backend",
    "get_array_module",
    "get_device",
    "get_im2col_budget",
    "get_num_threads",
    "im2col_budget",
    "is_device_array",
    "kernels",
    "memory",
    "retain_freed_memory",
    "retaining_freed_memory",
    "set_im2col_budget",
    "set_num_threads",
    "threads",
    "to_numpy",
    "transfer",
    "uniform",
    "use_kernels",
]


def uniform(generator: np.random.Generator, shape, like=None):
    """float32 samples in [0, 1) on the device of ``like``: drawn from ``generator`` on the CPU;
    on a GPU from a device generator seeded from it (see ``cupy_backend.uniform``)."""
    if like is None or not is_device_array(like):
        return generator.random(shape, dtype=np.float32)
    return cupy_backend.uniform(generator, shape, get_device(like))
