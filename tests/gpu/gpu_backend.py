"""``Backend``: one device and the helpers a device test needs (shared by the fixtures and the
tests of ``tests/gpu``; a module of its own because every test folder has a ``conftest``)."""

from __future__ import annotations

import numpy as np

import tinydl as td

__all__ = ["Backend"]


class Backend:
    """One device and the helpers a test needs to put data there and read it back."""

    def __init__(self, name: str):
        self.name = name
        self.device = td.Device(name)

    @property
    def xp(self):
        return self.device.xp

    def tensor(self, array, requires_grad: bool = False) -> td.Tensor:
        """A copy of a NumPy array as a tensor on this device."""
        return td.tensor(np.asarray(array), requires_grad=requires_grad, device=self.name)

    def array(self, array):
        return self.xp.asarray(array)

    @staticmethod
    def numpy(x) -> np.ndarray:
        """A NumPy copy of a tensor's or an array's data, wherever it lives."""
        x = x.detach().data if isinstance(x, td.Tensor) else x
        return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else np.asarray(x)

    def synchronize(self) -> None:
        if self.name != "cpu":
            td.cuda.synchronize(self.name)

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"
