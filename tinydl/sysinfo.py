"""``td.info()`` / ``tinydl info``: versions, the kernels and the BLAS in use, threads, data."""

from __future__ import annotations

import os
import platform

import numpy as np

from ._version import __version__

__all__ = ["info", "format_info", "blas_info"]


def blas_info(threads: bool = True) -> str:
    """The BLAS NumPy calls (with threadpoolctl installed: its CPU kernel, threading layer and,
    with ``threads``, its current thread count)."""
    try:
        import threadpoolctl

        for lib in threadpoolctl.threadpool_info():
            if lib.get("user_api") == "blas":
                return (
                    f"{lib.get('internal_api')} {lib.get('version')} "
                    f"({lib.get('architecture')}, {lib.get('threading_layer')}"
                    + (f", {lib.get('num_threads')} threads)" if threads else ")")
                )
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError):  # NumPy < 1.25 has no mode="dicts"
        return "unknown (see numpy.show_config())"


def info() -> dict:
    """What this tinydl will use: a dict of strings (printed by ``tinydl info``)."""
    from tinydl.backend import cupy_backend, kernels, memory, threads

    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = "not importable"
    available = kernels.available_kernels()
    chosen = kernels.active_kernels()
    why = "TINYDL_KERNELS" if os.environ.get("TINYDL_KERNELS") else "default"
    return {
        "tinydl": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba_version,
        "kernels": f"{chosen} ({why}; available: {', '.join(available)})"
        + (f"; numba unusable: {kernels.NUMBA_ERROR}" if kernels.NUMBA_ERROR else ""),
        "blas": blas_info(),
        "threads": f"{threads.get_num_threads()} worker threads ({os.cpu_count()} logical cores; "
        "td.set_num_threads / TINYDL_NUM_THREADS): conv, batch norm, pooling, ReLU and large "
        "matmuls split across them, BLAS single-threaded inside",
        "memory": "freed memory kept for reuse (TINYDL_RETAIN_MEMORY=0 turns it off)"
        if memory.retaining_freed_memory()
        else "freed memory returned to the system (glibc malloc defaults)",
        "im2col budget": f"{kernels.get_im2col_budget() / 2**20:g} MiB",
        "cuda": cupy_backend.describe(),
        "TINYDL_DATA": os.environ.get("TINYDL_DATA", "(not set)"),
    }


def format_info(d: dict | None = None) -> str:
    d = info() if d is None else d
    width = max(map(len, d))
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in d.items())
