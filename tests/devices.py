"""``Backend``: one device in a test, and what a test needs to put data there and read it back.

The ``backend`` fixture (``tests/conftest.py``) hands a test one ``Backend`` per device; tests
that compare a device with the CPU use ``CPU``.
"""

from __future__ import annotations

import numpy as np

import tinydl as td
from tinydl.backend import to_numpy

__all__ = ["CPU", "Backend"]


class Backend:
    """One device (``"cpu"`` or ``"cuda"``) and the helpers a test needs there."""

    def __init__(self, name: str):
        self.name = name
        self.device = td.Device(name)

    @property
    def xp(self):
        """The array module of the device: ``numpy`` or ``cupy``."""
        return self.device.xp

    def tensor(self, data, dtype=None, requires_grad=None) -> td.Tensor:
        """A leaf tensor on this device holding a copy of ``data`` (an array, a list, a number or
        a Tensor, wherever it lives). ``requires_grad`` defaults to the Tensor's own flag (False
        for everything else)."""
        if requires_grad is None:
            requires_grad = isinstance(data, td.Tensor) and data.requires_grad
        return td.tensor(data, dtype=dtype, requires_grad=requires_grad, device=self.name)

    def put(self, x):
        """``x`` itself when it is not a Tensor or lives on this device already, else a leaf copy
        here with the same ``requires_grad`` (so CPU tests keep their exact inputs, strides
        included)."""
        if not isinstance(x, td.Tensor) or x.device == self.device:
            return x
        return self.tensor(x)

    def array(self, data):
        """``data`` as an array of this device."""
        return self.xp.asarray(data)

    @staticmethod
    def numpy(x) -> np.ndarray:
        """A NumPy array with the values of a tensor or an array, wherever it lives."""
        return to_numpy(x.detach().data if isinstance(x, td.Tensor) else x)

    def synchronize(self) -> None:
        """Wait for the work queued on the device (nothing to wait for on the CPU)."""
        if self.name != "cpu":
            td.cuda.synchronize(self.name)

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


CPU = Backend("cpu")
