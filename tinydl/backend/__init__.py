"""Backends: which array module (NumPy or CuPy) holds a tensor's data.

The backend is read off the data (``get_array_module``), never from a global flag.
CuPy is imported only by ``cupy_backend`` (a later issue); here NumPy is always present.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeviceError

__all__ = ["Device", "get_array_module", "get_device", "as_device", "as_array"]


class Device:
    """A place for arrays: ``Device("cpu")`` or ``Device("cuda:0")``, with its array module ``xp``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise DeviceError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()) or (kind == "cpu" and idx):
            raise DeviceError(f"device: unknown device {spec!r}; use 'cpu', 'cuda' or 'cuda:N'")
        self.type = kind
        self.index = int(idx) if idx else (0 if kind == "cuda" else None)

    @property
    def xp(self):
        if self.type == "cpu":
            return np
        raise DeviceError(
            f"device {self}: CUDA is not available in this build of tinydl "
            "(the CuPy backend needs `pip install tinydl[gpu]` and an NVIDIA GPU)"
        )

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
            import sys

            return sys.modules["cupy"]
    return np


def get_device(array) -> Device:
    """The device an array lives on."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return CPU
    dev = getattr(array, "device", None)
    return Device(f"cuda:{getattr(dev, 'id', 0)}")


def as_device(spec) -> Device:
    """``None`` -> cpu; strings and Devices -> Device."""
    return CPU if spec is None else Device(spec)


def as_array(x):
    """A backend array from an array, NumPy scalar or number (0-d arrays stay arrays)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic) or not hasattr(x, "__array_namespace__"):
        return np.asarray(x)
    return x


# the kernel switch, re-exported as td.backend.use_kernels(...) (kernels needs the names above)
from .kernels import (  # noqa: E402
    active_kernels,
    get_im2col_budget,
    set_im2col_budget,
    use_kernels,
)

__all__ += ["use_kernels", "active_kernels", "set_im2col_budget", "get_im2col_budget"]
