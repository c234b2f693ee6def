"""What every benchmark shares: threads, timing, machine facts, tables and ``RESULTS.md``.

Rules the helpers enforce: warm-up calls are never timed; a time is the median of the timed
repeats; both frameworks run with the same number of threads; a table records the machine,
the command, the date, the threads and the BLAS it was measured with.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import importlib.util
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

try:
    import threadpoolctl

    HAVE_THREADPOOLCTL = True
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
    threadpoolctl = None
    HAVE_THREADPOOLCTL = False

__all__ = [
    "RESULTS",
    "add_common_args",
    "thread_env",
    "limit_threads",
    "time_calls",
    "summarize",
    "peak_rss_mib",
    "current_rss_mib",
    "machine_info",
    "format_table",
    "write_results",
    "start",
]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "TINYDL_NUM_THREADS",  # tinydl's own worker threads (tinydl.backend.threads)
)
_limiter = None  # keeps the threadpoolctl limit alive for the life of the process


def add_common_args(parser: argparse.ArgumentParser, steps: int) -> None:
    """``--steps``, ``--warmup``, ``--threads`` and ``--write``, shared by all benchmarks."""
    parser.add_argument(
        "--steps", type=int, default=steps, help="timed repeats (default %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for both frameworks: BLAS, OpenMP and torch (default: all cores, %(default)s)",
    )
    parser.add_argument(
        "--write", action="store_true", help="append the table to benchmarks/RESULTS.md"
    )


def thread_env(n: int) -> dict:
    """The environment for a child process whose BLAS/OpenMP pools start with ``n`` threads."""
    env = dict(os.environ)
    env.update({k: str(n) for k in _THREAD_VARS})
    return env


def limit_threads(n: int, torch_module=None) -> str:
    """Limit this process to ``n`` threads; returns how NumPy's BLAS was limited.

    NumPy's BLAS pool is resized with threadpoolctl when it is installed; otherwise only the
    environment variables (read when the BLAS library loads) apply, which ``thread_env`` sets
    for child processes. ``torch_module``, when given, gets ``set_num_threads(n)``.
    """
    global _limiter
    if n < 1:
        raise ValueError(f"limit_threads: n must be >= 1, got {n}")
    for k in _THREAD_VARS:
        os.environ[k] = str(n)
    if torch_module is not None:
        torch_module.set_num_threads(n)
    if "tinydl" in sys.modules:
        sys.modules["tinydl"].set_num_threads(n)
    if HAVE_THREADPOOLCTL:
        _limiter = threadpoolctl.threadpool_limits(limits=n)
        return f"threadpoolctl limit {n}"
    return f"environment ({', '.join(_THREAD_VARS[:3])}={n})"


def time_calls(fn, steps: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of ``steps`` calls of ``fn()``, after ``warmup`` untimed calls."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"time_calls: need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    for _ in range(warmup):
        fn()
    times = np.empty(steps)
    for i in range(steps):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times


def gemm_rate(steps: int, warmup: int, n: int = 1024) -> float:
    """float32 GFLOP/s of NumPy's BLAS on an ``n x n`` product: the ceiling for conv."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ms = summarize(time_calls(lambda: a @ b, steps, warmup))["ms"]
    return 2 * n**3 / (ms * 1e-3) / 1e9


def summarize(seconds: np.ndarray) -> dict:
    """Median and quartiles of per-call times, in milliseconds."""
    p25, med, p75 = np.percentile(np.asarray(seconds) * 1e3, [25, 50, 75])
    return {"ms": float(med), "p25": float(p25), "p75": float(p75), "n": int(len(seconds))}


def _proc_status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    NOTE: Linux's ``getrusage`` maxrss survives ``exec``: a worker spawned by a parent that
    holds MNIST would report the parent's peak. ``VmHWM`` belongs to the process's own memory
    map, so it is read first; ``getrusage`` is the fallback elsewhere.
    """
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def current_rss_mib() -> float:
    """Resident memory of this process now (``VmRSS``; the peak where /proc is missing), in MiB."""
    rss = _proc_status_mib("VmRSS")
    return peak_rss_mib() if rss is None else rss


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    from tinydl.sysinfo import blas_info

    return blas_info(threads=False)  # the table's header states the threads used


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(threads: int) -> dict:
    """CPU model, cores, threads used, BLAS, versions, and the load average before the run."""
    return {
        "machine": f"{_cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}",
        "threads": threads,
        "blas": _blas(),
        "versions": (
            f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"tinydl {_version('tinydl')}, torch {_version('torch')}"
        ),
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def format_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table, columns padded so that it also reads well in a terminal."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def header_lines(info: dict) -> list[str]:
    """The facts printed above every table."""
    return [
        f"- machine: {info['machine']}",
        f"- threads: {info['threads']} (both frameworks); BLAS: {info['blas']}",
        f"- {info['versions']}",
        f"- load average before the run: {info['load']}",
    ]


def write_results(title: str, info: dict, table: str, notes: list[str]) -> Path:
    """Append a dated section (command, machine, threads, BLAS, table, notes) to RESULTS.md."""
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = "\n".join(
        [
            "",
            f"## {title} ({stamp})",
            "",
            f"- command: `{command}`",
            *header_lines(info),
            "",
            table,
            "",
            *[f"- {n}" for n in notes],
            "",
        ]
    )
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(text)
    return RESULTS


def start(args) -> tuple[dict, object, str]:
    """What a benchmark does first, in the same process for both frameworks: import PyTorch
    when present, record the machine, limit both to ``args.threads`` and print the header.
    Returns ``(machine info, torch module or None, how the BLAS was limited)``."""
    torch_mod = None
    if importlib.util.find_spec("torch") is not None:
        import torch as torch_mod
    info = machine_info(args.threads)
    blas = limit_threads(args.threads, torch_mod)
    print(f"threads: {blas}")
    print("\n".join(header_lines(info)), flush=True)
    return info, torch_mod, blas


def fwd_bwd_closures(framework: str, fn, arrays, grad, needs=None):
    """``(forward, forward_backward)`` closures of ``fn`` over ``arrays`` in ``framework``
    ("torch" or "tinydl"): the forward under no_grad, and the forward with a backward of the
    fixed upstream ``grad`` into every array whose ``needs`` entry is true (default: all)."""
    needs = [True] * len(arrays) if needs is None else needs
    if framework == "torch":
        import torch

        ts = [torch.from_numpy(a).requires_grad_(n) for a, n in zip(arrays, needs)]
        gt, no_grad = torch.from_numpy(grad), torch.no_grad
    else:
        import tinydl as td

        ts = [td.tensor(a, requires_grad=n) for a, n in zip(arrays, needs)]
        gt, no_grad = td.tensor(grad), td.no_grad

    def fwd():
        with no_grad():
            fn(*ts)

    def fwd_bwd():
        for t in ts:
            t.grad = None
        fn(*ts).backward(gt)

    return fwd, fwd_bwd
