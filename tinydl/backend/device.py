"""Devices and the arrays on them: the one place that says which backend holds an array.

Everything here is read off the data, never from a global flag: ``get_array_module(x)`` gives
``numpy`` or ``cupy``, ``get_device(x)`` the ``Device``, ``is_device_array(x)`` whether it lives
on an accelerator, ``to_numpy(x)`` a host copy, ``transfer(x, device)`` a copy elsewhere.
CuPy is reached only through ``cupy_backend`` (imported lazily by it).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import DeviceError
from . import cupy_backend

__all__ = [
    "CPU",
    "Device",
    "as_array",
    "as_device",
    "get_array_module",
    "get_device",
    "is_device_array",
    "to_numpy",
    "transfer",
]


def is_device_array(x) -> bool:
    """True when ``x`` is an array of an accelerator backend (a CuPy array).

    NOTE: read off the type's module so that CuPy is never imported to answer."""
    return type(x).__module__.partition(".")[0] == "cupy"


def to_numpy(x) -> np.ndarray:
    """``x`` as a NumPy array: a host copy of a device array, ``x`` itself when it is a NumPy
    array already, ``np.asarray(x)`` for numbers, NumPy scalars and lists."""
    if is_device_array(x):
        return x.get()
    return np.asarray(x)  # the array itself for a NumPy array


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
        if type(a) is not np.ndarray and is_device_array(a):  # NOTE: no call for NumPy arrays
            return cupy_backend.cupy_module()
    return np


_CUDA = {}  # GPU index -> Device, so that every op does not parse a device string


def get_device(array) -> Device:
    """The device an array lives on (numbers and NumPy scalars: the CPU)."""
    if not is_device_array(array):
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
    if isinstance(x, np.ndarray) or is_device_array(x):
        return x
    return np.asarray(x)


def transfer(array, device):
    """``array`` on ``device`` (a copy when it lives elsewhere, the array itself otherwise)."""
    device = as_device(device)
    if device.type == "cpu":
        return to_numpy(array)
    return cupy_backend.to_device(array, device)
