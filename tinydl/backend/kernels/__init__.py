"""Convolution, pooling and batch-norm kernels: array in / array out, NCHW, one signature per operation.

Every variant provides the functions named in ``OPS`` with the signatures of ``numpy_ref``, the
plain NumPy reference that the tests compare the others with:

- ``"numpy"``: ``numpy_ref``, always present (and array-module generic);
- ``"numba"``: ``numba_cpu``, compiled loops, present when Numba imports.

The functional ops reach a kernel through ``get_kernel(op, like=array)``: CPU arrays get the
active CPU variant (``"numba"`` when available, else ``"numpy"``; ``TINYDL_KERNELS=numpy`` or
``use_kernels("numpy")`` choose the reference), arrays of another backend get the variant
registered under that backend's name (CuPy: ``"cuda"``) or the array-generic reference.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from contextlib import contextmanager

from . import numpy_ref
from .numpy_ref import (
    batchnorm_backward,
    batchnorm_forward,
    col2im,
    conv_output_size,
    im2col,
    maxpool2d_backward,
    maxpool2d_forward,
)

__all__ = [
    "OPS",
    "KERNELS",
    "get_kernel",
    "fused_update",
    "register_kernels",
    "use_kernels",
    "set_im2col_budget",
    "get_im2col_budget",
    "im2col_chunk",
    "active_kernels",
    "available_kernels",
    "conv_output_size",
    "im2col",
    "col2im",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "numpy_ref",
]

OPS = (
    "im2col",
    "col2im",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "batchnorm_forward",
    "batchnorm_backward",
)
CPU_VARIANTS = ("numpy", "numba")

# variant name -> {op name -> function}; "numba" is added on first use (see _load_numba)
KERNELS: dict[str, dict] = {"numpy": {op: getattr(numpy_ref, op) for op in OPS}}
NUMBA_ERROR: str | None = None  # why the Numba kernels are missing, for `tinydl info`


def _load_numba() -> bool:
    """Import the Numba kernels on first use: importing Numba takes about half a second and
    pulls in SciPy when it is installed, which ``import tinydl`` should not pay for."""
    global NUMBA_ERROR
    if "numba" in KERNELS:
        return True
    if NUMBA_ERROR is None:
        try:
            from . import numba_cpu
        except ImportError as exc:  # a core dependency, but a broken install must not break us
            NUMBA_ERROR = f"{type(exc).__name__}: {exc}"
        else:
            KERNELS["numba"] = {op: getattr(numba_cpu, op) for op in OPS}
    return "numba" in KERNELS


def _load_cuda() -> None:
    """Register the CUDA kernels on first use (their module builds CuPy kernels lazily)."""
    if "cuda" not in KERNELS:
        from . import cuda

        KERNELS["cuda"] = {op: getattr(cuda, op) for op in OPS}


def fused_update(name: str, param, grad):
    """The fused CUDA twin of the optimizer update ``name`` (``"sgd_update"``,
    ``"adam_update"``) for CuPy arrays of one floating dtype, or None (then the plain update
    runs, through the array module's ufuncs)."""
    if param.dtype != grad.dtype or param.dtype.kind != "f" or param.dtype.itemsize < 4:
        return None
    _load_cuda()
    from . import cuda

    return getattr(cuda, "fused_" + name, None)


def available_kernels() -> list[str]:
    """The CPU kernel variants that work here (imports Numba to find out)."""
    _load_numba()
    return [v for v in CPU_VARIANTS if v in KERNELS]


def register_kernels(name: str, functions: dict) -> None:
    """Add a kernel variant; it must provide every op in ``OPS``."""
    missing = [op for op in OPS if op not in functions]
    if missing:
        raise ValueError(f"register_kernels: variant {name!r} lacks {missing}")
    KERNELS[name] = {op: functions[op] for op in OPS}


def _initial_variant() -> str:
    wanted = os.environ.get("TINYDL_KERNELS", "").strip().lower()
    if wanted and wanted not in CPU_VARIANTS:
        warnings.warn(
            f"TINYDL_KERNELS={wanted!r} is not one of {CPU_VARIANTS}; using the default",
            stacklevel=2,
        )
        wanted = ""
    try:
        has_numba = importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["numba"] is None
        has_numba = False
    return wanted or ("numba" if has_numba else "numpy")


_active = _initial_variant()


def active_kernels() -> str:
    """The name of the CPU kernel variant in use (``"numba"`` or ``"numpy"``)."""
    return _active


@contextmanager
def _restore(previous: str):
    global _active
    try:
        yield previous
    finally:
        _active = previous


def use_kernels(name: str):
    """Switch the CPU kernels to ``name`` (``"numba"`` or ``"numpy"``) now.

    Also a context manager that switches back on exit::

        with td.backend.use_kernels("numpy"):
            ...  # runs the reference kernels
    """
    global _active
    if name not in CPU_VARIANTS:
        raise ValueError(f"use_kernels: unknown CPU kernels {name!r}; choose from {CPU_VARIANTS}")
    if name == "numba" and not _load_numba():
        raise ValueError(f"use_kernels: the 'numba' kernels are unavailable ({NUMBA_ERROR})")
    previous, _active = _active, name
    return _restore(previous)


def _fall_back_to_numpy() -> None:
    global _active
    warnings.warn(
        f"tinydl: the Numba kernels are unusable ({NUMBA_ERROR}); running the NumPy reference "
        "kernels (slower). Set TINYDL_KERNELS=numpy to silence this.",
        RuntimeWarning,
        stacklevel=3,
    )
    _active = "numpy"


def get_kernel(op: str, variant: str | None = None, like=None):
    """The function for ``op`` (one of ``OPS``).

    ``variant`` names one explicitly; otherwise it follows the data: ``like`` a NumPy array (or
    ``None``) gives the active CPU variant, an array of another backend its own variant.
    """
    if variant is None:
        module = type(like).__module__.split(".")[0] if like is not None else "numpy"
        if module == "numpy":
            variant = _active
            if variant == "numba" and not _load_numba():
                _fall_back_to_numpy()
                variant = "numpy"
        else:
            variant = {"cupy": "cuda"}.get(module, module)
            if variant == "cuda":
                _load_cuda()
            if variant not in KERNELS:
                variant = "numpy"  # the reference is written against the array module
    if variant not in KERNELS:
        raise ValueError(f"get_kernel: unknown kernel variant {variant!r}; known: {list(KERNELS)}")
    if op not in OPS:
        raise ValueError(f"get_kernel: unknown op {op!r}; known: {list(OPS)}")
    return KERNELS[variant][op]


# ----------------------------------------------------------------------------- im2col budget

_im2col_budget = 256 * 2**20  # bytes


def set_im2col_budget(nbytes: int) -> int:
    """Bound the im2col column matrix to ``nbytes`` (default 256 MiB); returns the old bound.

    A convolution whose columns for the whole batch would exceed it runs in chunks of images
    that fit (at least one image per chunk)."""
    global _im2col_budget
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"set_im2col_budget: nbytes must be a positive int, got {nbytes!r}")
    previous, _im2col_budget = _im2col_budget, nbytes
    return previous


def get_im2col_budget() -> int:
    """The current bound on the im2col column matrix, in bytes."""
    return _im2col_budget


def im2col_chunk(x_shape, kh, kw, itemsize, stride=1, padding=0, dilation=1) -> int:
    """How many images of ``x_shape`` one im2col call may take within the budget (>= 1)."""
    n, c = x_shape[:2]
    oh, ow, *_ = numpy_ref._geometry(x_shape, kh, kw, stride, padding, dilation)
    per_image = c * kh * kw * oh * ow * itemsize
    return max(1, min(n, _im2col_budget // max(per_image, 1)))
