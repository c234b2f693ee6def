"""Host memory: keep freed arrays' memory in the process for the next step's arrays.

A training step allocates the same large arrays every time (im2col columns of 100+ MB,
activations, gradients) and frees them by the end of the step. glibc's malloc serves arrays
above its mmap threshold (128 KiB to 32 MiB, adaptive) with fresh pages from the kernel and
hands them back on free, so every step page-faults through, and the kernel zero-fills, the
whole working set again: measured as 20-25% of a MnistCNN step's CPU time on this project's
2-core machine (``benchmarks/RESULTS.md``). Raising the mmap and trim thresholds makes malloc
reuse freed memory instead, as PyTorch's caching allocator does on a GPU. The cost: the
process keeps its peak heap (resident size does not shrink after a large step).

``import tinydl`` turns this on where the C library is glibc, unless the environment variable
``TINYDL_RETAIN_MEMORY`` is ``0``; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["retain_freed_memory", "retaining_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_RETAIN = 2**31 - 1  # the largest int mallopt takes: no trimming, mmap only above 2 GiB
# glibc's defaults: a 128 KiB start for both (then adaptive); mallopt disables the adaptation
_DEFAULT = 128 * 1024
_state = {"on": False}


def _mallopt():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return libc.mallopt if hasattr(libc, "gnu_get_libc_version") else None
    except OSError:  # no loadable C library (e.g. some embedded builds)
        return None


def retain_freed_memory(enable: bool = True) -> bool:
    """Keep (``True``) or return (``False``) freed large arrays' memory in the process; returns
    whether the setting took effect (``False`` where the C library is not glibc)."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    value = _RETAIN if enable else _DEFAULT
    ok = bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))
    if ok:
        _state["on"] = enable
    return ok


def retaining_freed_memory() -> bool:
    """Whether ``retain_freed_memory`` is in effect in this process."""
    return _state["on"]


if os.environ.get("TINYDL_RETAIN_MEMORY", "1") != "0":
    retain_freed_memory(True)
