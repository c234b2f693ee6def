"""Convolution, pooling and batch-norm kernels: array in / array out, NCHW, one signature per operation.

Every variant provides the functions named in ``OPS`` with the signatures of ``numpy_ref``, the
plain NumPy reference that the tests compare the others with:

- ``"numpy"``: ``numpy_ref``, always present (and array-module generic);
- ``"numba"``: ``numba_cpu``, compiled loops, loaded on first use when Numba imports;
- ``"cuda"``: ``cuda``, CuPy kernels, loaded on first use by a CuPy array.

The functional ops reach a kernel through ``get_kernel(op, like=array)``: CPU arrays get the
active CPU variant (``"numba"`` when available, else ``"numpy"``; ``TINYDL_KERNELS=numpy`` or
``use_kernels("numpy")`` choose the reference, for the current thread), CuPy arrays ``"cuda"``.
"""

from __future__ import annotations

import contextvars
import importlib.util
import os
import warnings

import numpy as np

from ..device import is_device_array
from . import numpy_ref
from .numpy_ref import OPS, conv_output_size

__all__ = [
    "OPS",
    "KERNELS",
    "get_kernel",
    "fused_update",
    "register_kernels",
    "use_kernels",
    "set_im2col_budget",
    "get_im2col_budget",
    "im2col_budget",
    "im2col_chunk",
    "active_kernels",
    "numba_loops_for",
    "available_kernels",
    "conv_output_size",
    "numpy_ref",
]

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


# NOTE: context-local, like grad mode: a `with use_kernels(...)` block or a plain call changes
# the kernels of the current thread (and asyncio task) only.
_DEFAULT_VARIANT = _initial_variant()
_active: contextvars.ContextVar[str] = contextvars.ContextVar(
    "tinydl_kernels", default=_DEFAULT_VARIANT
)


def active_kernels() -> str:
    """The name of the CPU kernel variant in use (``"numba"`` or ``"numpy"``) here."""
    return _active.get()


def numba_loops_for(*arrays) -> bool:
    """Whether the element-wise Numba loops (``numba_relu``, ``numba_dropout``) may take
    ``arrays``: NumPy float32/float64 arrays of one dtype, the ``"numba"`` kernels active
    (loading Numba, or falling back to the reference with a warning)."""
    dtype = arrays[0].dtype
    return (
        all(type(a) is np.ndarray and a.dtype == dtype for a in arrays)
        and dtype in (np.float32, np.float64)
        and get_kernel("im2col", like=arrays[0]) is not None
        and active_kernels() == "numba"
    )


class _Restore:
    """Returned by a setter: used as a ``with`` block, it restores the previous value on exit."""

    def __init__(self, var: contextvars.ContextVar, value):
        self.previous = var.get()
        self._var, self._token = var, var.set(value)

    def __enter__(self):
        return self.previous

    def __exit__(self, *exc) -> None:
        self._var.reset(self._token)


def use_kernels(name: str) -> _Restore:
    """Switch the CPU kernels of the current thread to ``name`` (``"numba"`` or ``"numpy"``).

    Also a context manager that switches back on exit::

        with td.backend.use_kernels("numpy"):
            ...  # runs the reference kernels
    """
    if name not in CPU_VARIANTS:
        raise ValueError(f"use_kernels: unknown CPU kernels {name!r}; choose from {CPU_VARIANTS}")
    if name == "numba" and not _load_numba():
        raise ValueError(f"use_kernels: the 'numba' kernels are unavailable ({NUMBA_ERROR})")
    return _Restore(_active, name)


def _fall_back_to_numpy() -> None:
    warnings.warn(
        f"tinydl: the Numba kernels are unusable ({NUMBA_ERROR}); running the NumPy reference "
        "kernels (slower). Set TINYDL_KERNELS=numpy to silence this.",
        RuntimeWarning,
        stacklevel=3,
    )
    _active.set("numpy")


def get_kernel(op: str, variant: str | None = None, like=None):
    """The function for ``op`` (one of ``OPS``).

    ``variant`` names one explicitly; otherwise it follows the data: ``like`` a NumPy array (or
    ``None``) gives the active CPU variant, a CuPy array the ``"cuda"`` variant.
    """
    if variant is None:
        if is_device_array(like):
            _load_cuda()
            variant = "cuda"
        else:
            variant = _active.get()
            if variant == "numba" and not _load_numba():
                _fall_back_to_numpy()
                variant = "numpy"
    if variant not in KERNELS:
        raise ValueError(f"get_kernel: unknown kernel variant {variant!r}; known: {list(KERNELS)}")
    if op not in OPS:
        raise ValueError(f"get_kernel: unknown op {op!r}; known: {list(OPS)}")
    return KERNELS[variant][op]


# ----------------------------------------------------------------------------- im2col budget

_im2col_budget: contextvars.ContextVar[int] = contextvars.ContextVar(
    "tinydl_im2col_budget", default=256 * 2**20
)


def _check_budget(fn: str, nbytes) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"{fn}: nbytes must be a positive int, got {nbytes!r}")
    return nbytes


def set_im2col_budget(nbytes: int) -> int:
    """Bound the im2col column matrix to ``nbytes`` (default 256 MiB) in the current thread;
    returns the old bound.

    A convolution whose columns for the whole batch would exceed it runs in chunks of images
    that fit (at least one image per chunk), and its backward recomputes the columns instead
    of keeping them (see ``tinydl.functional.conv2d``)."""
    previous = _im2col_budget.get()
    _im2col_budget.set(_check_budget("set_im2col_budget", nbytes))
    return previous


def im2col_budget(nbytes: int) -> _Restore:
    """``with im2col_budget(nbytes):`` bounds the im2col columns inside the block only."""
    return _Restore(_im2col_budget, _check_budget("im2col_budget", nbytes))


def get_im2col_budget() -> int:
    """The current bound on the im2col column matrix, in bytes."""
    return _im2col_budget.get()


def im2col_chunk(x_shape, kh, kw, itemsize, stride=1, padding=0, dilation=1) -> int:
    """How many images of ``x_shape`` one im2col call may take within the budget (>= 1)."""
    n, c = x_shape[:2]
    oh, ow, *_ = numpy_ref._geometry(x_shape, kh, kw, stride, padding, dilation)
    per_image = c * kh * kw * oh * ow * itemsize
    return max(1, min(n, _im2col_budget.get() // max(per_image, 1)))
