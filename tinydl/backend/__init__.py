"""Backends: which array module (NumPy or CuPy) holds a tensor's data.

The backend is read off the data (``get_array_module``), never from a global flag.
NumPy is always present; CuPy is imported only by ``cupy_backend``, and only when CUDA is asked
for (a ``"cuda"`` device, ``td.cuda.is_available()``, a CuPy array).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import DeviceError
from . import cupy_backend

__all__ = [
    "Device",
    "get_array_module",
    "get_device",
    "as_device",
    "as_array",
    "transfer",
    "uniform",
]


class Device:
    """A place for arrays: ``Device("cpu")`` or ``Device("cuda:0")``, with its array module ``xp``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise DeviceError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, colon, idx = spec.partition(":")
        if (
            kind not in ("cpu", "cuda")
            or (colon and not idx.isdigit())
            or (kind == "cpu" and colon)
        ):
            raise DeviceError(f"device: unknown device {spec!r}; use 'cpu', 'cuda' or 'cuda:N'")
        self.type = kind
        self.index = int(idx) if idx else (0 if kind == "cuda" else None)

    @property
    def xp(self):
        """The array module: ``numpy``, or ``cupy`` (``DeviceError`` when CUDA is missing)."""
        if self.type == "cpu":
            return np
        return cupy_backend.cupy_module(self)

    def use(self):
        """A context in which new arrays land on this device (CUDA's current device)."""
        if self.type == "cpu":
            return contextlib.nullcontext()
        return self.xp.cuda.Device(self.index)

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return (
            f"device(type='{self.type}'"
            + ("" if self.index is None else f", index={self.index}")
            + ")"
        )

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = Device("cpu")


def get_array_module(*arrays):
    """The array module (``numpy`` or ``cupy``) of the given arrays, like ``cupy.get_array_module``."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            return cupy_backend.cupy_module()
    return np


_CUDA = {}  # GPU index -> Device, so that every op does not parse a device string


def get_device(array) -> Device:
    """The device an array lives on."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return CPU
    index = getattr(getattr(array, "device", None), "id", 0)
    device = _CUDA.get(index)
    if device is None:
        device = _CUDA[index] = Device(f"cuda:{index}")
    return device


def as_device(spec) -> Device:
    """``None`` -> cpu; strings and Devices -> Device."""
    return CPU if spec is None else Device(spec)


def as_array(x):
    """A backend array from an array, NumPy scalar or number (0-d arrays stay arrays)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic):
        return np.asarray(x)
    # NOTE: CuPy arrays are recognised by the CUDA array interface: not every CuPy version
    # has __array_namespace__, and np.asarray refuses a CuPy array.
    if hasattr(x, "__cuda_array_interface__") or hasattr(x, "__array_namespace__"):
        return x
    return np.asarray(x)


def transfer(array, device):
    """``array`` on ``device`` (a copy when it lives elsewhere, the array itself otherwise)."""
    device = as_device(device)
    if device.type == "cpu":
        return array if isinstance(array, np.ndarray) else array.get()
    return cupy_backend.to_device(array, device)


def uniform(generator: np.random.Generator, shape, like=None):
    """float32 samples in [0, 1) on the device of ``like``: drawn from ``generator`` on the CPU;
    on a GPU from a device generator seeded from it (see ``cupy_backend.uniform``)."""
    if like is None or isinstance(like, np.ndarray):
        return generator.random(shape, dtype=np.float32)
    return cupy_backend.uniform(generator, shape, get_device(like))


# the kernel switch, re-exported as td.backend.use_kernels(...) (kernels needs the names above)
from .kernels import (  # noqa: E402
    active_kernels,
    get_im2col_budget,
    set_im2col_budget,
    use_kernels,
)

__all__ += ["use_kernels", "active_kernels", "set_im2col_budget", "get_im2col_budget"]
