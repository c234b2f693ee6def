"""Worker threads for the CPU kernels: every phase of a step on every core.

Why our own threads rather than BLAS's: on a 2-core machine OpenBLAS's pool (whose threads
spin for a while after each product) and a second pool for the memory-bound kernels fought
for the cores, so im2col, col2im, batch norm and pooling ran on one core while BLAS used two
for the GEMMs only. Here a convolution splits its batch into one share per thread; each thread
runs the whole chain for its share (im2col, a single-threaded GEMM, the layout pass, col2im),
and the BLAS pool is set to one thread for the time of the parallel region (threadpoolctl), so
no two pools spin against each other. Numba kernels and large NumPy ufunc loops release the
GIL, so the shares run in parallel. Once a region has run, ``matmul`` keeps tinydl's own
products off BLAS's pool too: its threads spin after a product and took the cores from the
next region's shares (the LeNet step ran about 1.5x slower).

``get_num_threads()`` defaults to the CPUs this process may use; ``TINYDL_NUM_THREADS`` or
``set_num_threads(n)`` change it (1: everything on the calling thread, BLAS left alone).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

__all__ = ["get_num_threads", "set_num_threads", "set_blas_threads", "parallel", "split"]
__all__ += ["matmul", "map_rows"]

_lock = threading.Lock()
# "regions": a parallel region has run (matmul then keeps off BLAS's pool)
_state = {"n": None, "pool": None, "blas": None, "depth": 0, "saved": [], "regions": False}
_local = threading.local()  # .inside: this thread is running a share (no nested regions)


def _after_fork_in_child() -> None:
    # NOTE: a forked child inherits the pool object but not its threads; work submitted to it
    # would wait forever. The child starts a pool of its own on first use.
    _state.update(pool=None, depth=0, saved=[])
    _local.inside = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads the CPU kernels use (PyTorch's ``torch.get_num_threads``)."""
    if _state["n"] is None:
        _state["n"] = env_threads() or _cpus()
    return _state["n"]


def env_threads() -> int | None:
    """``TINYDL_NUM_THREADS`` when it is a positive int, else None."""
    env = os.environ.get("TINYDL_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) for the CPU kernels from now on."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    with _lock:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
        _state["n"], _state["pool"] = n, None


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges cutting ``range(n)`` into at most ``parts`` near-equal pieces."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _blas():
    """threadpoolctl's controllers of the BLAS libraries loaded (found once, after NumPy)."""
    if _state["blas"] is None:
        import threadpoolctl

        found = threadpoolctl.ThreadpoolController().select(user_api="blas")
        _state["blas"] = list(found.lib_controllers)
    return _state["blas"]


def set_blas_threads(n: int) -> None:
    """Let the BLAS libraries use ``n`` threads outside tinydl's parallel regions (e.g. one
    per MPI rank: their default, every core in each rank, oversubscribes the machine)."""
    with _lock:
        for lib in _blas():
            lib.set_num_threads(n)


def _enter_blas_single():
    with _lock:
        if _state["depth"] == 0:
            libs = _blas()
            _state["saved"] = [lib.get_num_threads() for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _state["depth"] += 1


def _exit_blas_single():
    with _lock:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            for lib, n in zip(_blas(), _state["saved"]):
                lib.set_num_threads(n)


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(n - 1, thread_name_prefix="tinydl")
        return _state["pool"]


def _run_share(fn, item):
    _local.inside = True
    try:
        return fn(item)
    finally:
        _local.inside = False


def parallel(fn, items) -> list:
    """``[fn(item) for item in items]``, the items spread over the worker threads (the first on
    the calling thread) with BLAS single-threaded meanwhile; in order. Serial when there is one
    item or one thread, and inside a share (no nested regions)."""
    items = list(items)
    n = get_num_threads()
    if len(items) < 2 or n < 2 or getattr(_local, "inside", False):
        return [fn(item) for item in items]
    pool = _pool(n)
    _state["regions"] = True
    _enter_blas_single()
    try:
        futures = [pool.submit(_run_share, fn, item) for item in items[1:]]
        try:
            first = _run_share(fn, items[0])
        finally:  # NOTE: even when the first share raised: the others still write their rows
            wait(futures)
        return [first] + [f.result() for f in futures]
    finally:
        _exit_blas_single()


# below this many multiply-adds a product stays one BLAS call: a share's hand-off costs more
_MATMUL_MIN = 1 << 24
# NOTE: and below this many rows: measured on 2 cores, 32 rows split 296-363 us vs 222-242 us
# in one call (k x n = 256 x 1024, 1024 x 256); 64 rows split 347-368 vs 391-409 us
_SPLIT_ROWS = 64


def matmul(a, b):
    """``a @ b``; 2-D NumPy products follow who holds the cores.

    Until a parallel region has run in this process (a model of ``Linear`` layers only), one
    BLAS call on BLAS's own threads, whatever the size. After one has (convolution, pooling,
    batch norm: the kernels' shares), a single-threaded BLAS call, or for products of at least
    ``_MATMUL_MIN`` multiply-adds the rows of ``a`` split across the worker threads, each
    writing its rows of the result with a single-threaded BLAS call (see the module docstring).
    """
    n = get_num_threads()
    if (
        b.ndim != 2
        or a.ndim != 2
        or n < 2
        or not _state["regions"]
        or getattr(_local, "inside", False)
        or type(a) is not np.ndarray
        or type(b) is not np.ndarray
    ):
        # NOTE: BLAS's pool beats our shares at every size when nothing else runs (128x784 @
        # 784x256: 358 against 474 us; the MLP step 2.1 against 2.9 ms)
        return a @ b
    m = a.shape[0]
    if m < max(2 * n, _SPLIT_ROWS) or m * a.shape[1] * b.shape[1] < _MATMUL_MIN:
        # NOTE: not on BLAS's pool: its threads spin for a while after each product and took
        # the cores from the next region's shares (LeNet step 15.0 against 10.0 ms, 2 cores)
        _enter_blas_single()
        try:
            return a @ b
        finally:
            _exit_blas_single()
    out = np.empty((m, b.shape[1]), dtype=np.result_type(a, b))
    parallel(lambda r: np.matmul(a[r[0] : r[1]], b, out=out[r[0] : r[1]]), split(m, n))
    return out


# below this many bytes an element-wise pass stays on the calling thread
_ROWS_MIN = 1 << 20


def map_rows(fn, out, *arrays):
    """``fn(*arrays, out=out)`` for an element-wise NumPy ``fn`` over arrays of ``out``'s shape,
    the leading axis split across the worker threads when ``out`` is large (NumPy's ufunc loops
    release the GIL); one call otherwise. Returns ``out``."""
    n = get_num_threads()
    if n < 2 or out.ndim == 0 or out.nbytes < _ROWS_MIN or type(out) is not np.ndarray:
        fn(*arrays, out=out)
        return out
    parallel(lambda r: fn(*(a[r[0] : r[1]] for a in arrays), out=out[r[0] : r[1]]),
             split(out.shape[0], n))
    return out
