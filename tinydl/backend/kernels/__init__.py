"""Convolution and pooling kernels: array in / array out, NCHW, one signature per operation.

Every variant ("numpy" here; "numba" and "cuda" later) provides the functions named in ``OPS``
with the signatures of ``numpy_ref``, the plain NumPy reference that tests compare them with.
``get_kernel(op)`` is how the functional ops reach a kernel, so a variant can be chosen in one
place.
"""

from __future__ import annotations

from . import numpy_ref
from .numpy_ref import col2im, conv_output_size, im2col, maxpool2d_backward, maxpool2d_forward

__all__ = [
    "OPS",
    "KERNELS",
    "get_kernel",
    "register_kernels",
    "conv_output_size",
    "im2col",
    "col2im",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "numpy_ref",
]

OPS = ("im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward")

# variant name -> {op name -> function}
KERNELS: dict[str, dict] = {"numpy": {op: getattr(numpy_ref, op) for op in OPS}}


def register_kernels(name: str, functions: dict) -> None:
    """Add a kernel variant; it must provide every op in ``OPS``."""
    missing = [op for op in OPS if op not in functions]
    if missing:
        raise ValueError(f"register_kernels: variant {name!r} lacks {missing}")
    KERNELS[name] = {op: functions[op] for op in OPS}


def get_kernel(op: str, variant: str = "numpy"):
    """The function for ``op`` (one of ``OPS``) in ``variant`` (default: the NumPy reference)."""
    if variant not in KERNELS:
        raise ValueError(f"get_kernel: unknown kernel variant {variant!r}; known: {list(KERNELS)}")
    if op not in OPS:
        raise ValueError(f"get_kernel: unknown op {op!r}; known: {list(OPS)}")
    return KERNELS[variant][op]
