"""``td.cuda``: is a CUDA GPU usable here, how many, and waiting for the queued GPU work.

>>> import tinydl as td
>>> device = "cuda" if td.cuda.is_available() else "cpu"
>>> x = td.randn(3, 4, device=device)

Nothing is imported at ``import tinydl``; the first call imports CuPy (when installed).
"""

from __future__ import annotations

from .backend import as_device, cupy_backend

__all__ = ["is_available", "device_count", "synchronize", "get_device_name", "why_unavailable"]


def is_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA GPU."""
    return cupy_backend.is_available()


def device_count() -> int:
    """How many CUDA GPUs there are (0 without CuPy or without a GPU)."""
    return cupy_backend.device_count()


def synchronize(device=None) -> None:
    """Block until every kernel and copy queued on ``device`` (default ``cuda:0``) has finished;
    time GPU work between two calls. Does nothing where CUDA is unavailable."""
    cupy_backend.synchronize(None if device is None else as_device(device))


def get_device_name(device=None) -> str:
    """The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"`` (``DeviceError`` without CUDA)."""
    index = 0 if device is None else as_device(device).index or 0
    return cupy_backend.device_name(index)


def why_unavailable() -> str | None:
    """What is missing for CUDA (CuPy, or a GPU), or None when it is available."""
    return cupy_backend.unavailable_reason()
