"""Kernel-level timings: conv2d, max-pool and linear, tinydl (Numba and NumPy-reference
kernels) beside PyTorch CPU in the same process and threads, with GFLOP/s against the
machine's float32 GEMM rate.

Each case is timed through tinydl's public ops (``F.conv2d`` ... then ``backward``), so the
numbers include everything a training step pays: im2col/col2im, the GEMMs, layout changes and
the Python of the autograd engine. ``fwd`` is the forward alone under ``no_grad``;
``fwd+bwd`` builds the graph and backpropagates a fixed upstream gradient into every input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import common

DESCRIPTION = "conv2d / max-pool / linear forward and backward: Numba and NumPy kernels vs PyTorch"

# (name, N, C_in, C_out, H, kernel, padding): the shapes of the kernels issue
CONV_SHAPES = [
    ("a", 64, 1, 32, 28, 3, 1),
    ("b", 64, 32, 64, 14, 3, 1),
    ("c", 128, 1, 6, 28, 5, 2),
    ("d", 128, 6, 16, 14, 5, 0),
]
POOL_SHAPE = (128, 32, 28, 28)
LINEAR_SHAPE = (128, 784, 256)


def _cases():
    """``(op, shape label, flops of the forward, builder)``; a builder takes a framework name
    and returns ``(forward, forward_backward)`` closures on fixed random inputs."""
    cases = []
    for label, n, cin, cout, h, k, p in CONV_SHAPES:
        oh = h + 2 * p - k + 1
        flops = 2 * n * cout * oh * oh * cin * k * k
        shape = f"({label}) {n}x{cin}x{h}x{h} -> {cout}, k{k} p{p}"
        cases.append(("conv2d", shape, flops, _conv_builder(n, cin, cout, h, k, p)))
    n, c, h, w = POOL_SHAPE
    cases.append(("max_pool2d 2x2", f"{n}x{c}x{h}x{w}", None, _pool_builder(POOL_SHAPE)))
    b, i, o = LINEAR_SHAPE
    cases.append(("linear", f"{b}x{i} -> {o}", 2 * b * i * o, _linear_builder(b, i, o)))
    return cases


def _inputs(*shapes):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s, dtype=np.float32) * 0.1 for s in shapes]


def _closures(framework, fn, arrays, grad_shape):
    """Forward and forward+backward closures of ``fn`` over ``arrays`` in ``framework``."""
    (g,) = _inputs(grad_shape)
    return common.fwd_bwd_closures(framework, fn, arrays, g)


def _functional(framework):
    if framework == "torch":
        import torch.nn.functional as F
    else:
        import tinydl.functional as F
    return F


def _conv_builder(n, cin, cout, h, k, p):
    def build(framework):
        F = _functional(framework)
        oh = h + 2 * p - k + 1
        arrays = _inputs((n, cin, h, h), (cout, cin, k, k), (cout,))
        return _closures(
            framework, lambda x, w, b: F.conv2d(x, w, b, padding=p), arrays, (n, cout, oh, oh)
        )

    return build


def _pool_builder(shape):
    def build(framework):
        F = _functional(framework)
        n, c, h, w = shape
        return _closures(
            framework, lambda x: F.max_pool2d(x, 2), _inputs(shape), (n, c, h // 2, w // 2)
        )

    return build


def _linear_builder(b, i, o):
    def build(framework):
        F = _functional(framework)
        arrays = _inputs((b, i), (o, i), (o,))
        return _closures(framework, F.linear, arrays, (b, o))

    return build


def _time(fn, args) -> float:
    return common.summarize(common.time_calls(fn, args.steps, args.warmup))["ms"]


def measure(framework: str, args, variants: list[str]) -> dict:
    """Milliseconds of every case and pass for one framework, in this process: ``{"i/part":
    ms}`` for torch, ``{"i/part/variant": ms}`` for tinydl (with the GEMM ceiling)."""
    if framework == "torch":
        import torch

        common.limit_threads(args.threads, torch)
    else:
        common.limit_threads(args.threads)
    out = {}
    if framework == "tinydl":
        out["ceiling"] = common.gemm_rate(args.steps, args.warmup)
    for i, (_, _, _, build) in enumerate(_cases()):
        for part, idx in (("fwd", 0), ("fwd+bwd", 1)):
            if framework == "torch":
                out[f"{i}/{part}"] = _time(build("torch")[idx], args)
                continue
            from tinydl.backend import use_kernels

            for v in variants:
                with use_kernels(v):
                    out[f"{i}/{part}/{v}"] = _time(build("tinydl")[idx], args)
    return out


def _worker(framework: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.kernels", "--worker", framework, "--kernels",
           args.kernels, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, cwd=root, env=common.thread_env(args.threads),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kernels worker {framework} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args, have_torch: bool, variants: list[str]) -> tuple[list[list], list[str]]:
    # NOTE: each framework in its own process, alternated round by round: in one process
    # PyTorch's idle OpenMP threads and tinydl's workers slowed each other (measured: conv (d)
    # 9.1 ms beside PyTorch, 5.7 ms alone)
    rounds = {"torch": [], "tinydl": []}
    for _ in range(args.rounds):
        for framework in (("torch",) if have_torch else ()) + ("tinydl",):
            rounds[framework].append(_worker(framework, args))
    med = {fw: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
           for fw, rs in rounds.items() if rs}
    ceiling = med["tinydl"]["ceiling"]
    print(f"float32 GEMM ceiling (NumPy BLAS, 1024^3): {ceiling:.0f} GFLOP/s", flush=True)
    rows = []
    for i, (op, shape, flops, _) in enumerate(_cases()):
        for part, mult in (("fwd", 1), ("fwd+bwd", 3)):
            torch_ms = med["torch"][f"{i}/{part}"] if have_torch else None
            ours = {v: med["tinydl"][f"{i}/{part}/{v}"] for v in variants}
            row = [op, shape, part, *(f"{ours[v]:.2f}" for v in variants)]
            row.append(f"{torch_ms:.2f}" if torch_ms else "-")
            row += [f"{ours[v] / torch_ms:.2f}x" if torch_ms else "-" for v in variants]
            if flops:
                rate = mult * flops / (ours[variants[0]] * 1e-3) / 1e9
                row += [f"{rate:.0f}", f"{rate / ceiling:.0%}"]
            else:
                row += ["-", "-"]
            rows.append(row)
            print("  " + " | ".join(row), flush=True)
    notes = [
        f"float32 GEMM ceiling measured in the same run: {ceiling:.0f} GFLOP/s (NumPy BLAS, "
        "1024x1024 @ 1024x1024).",
        f"ms: each framework in its own process, {args.rounds} alternated rounds; the median "
        f"over rounds of the median of {args.steps} timed calls after {args.warmup} warm-up "
        "calls; x = tinydl / torch (above 1: tinydl slower). GFLOP/s and % of GEMM for the "
        "first kernel variant (fwd+bwd counts 3x the forward's multiply-adds: the "
        "input-gradient, weight-gradient and forward products).",
        "fwd runs under no_grad; fwd+bwd backpropagates a fixed gradient into every input "
        "(conv: x, weight, bias).",
    ]
    return rows, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks kernels", description=DESCRIPTION)
    parser.add_argument(
        "--kernels",
        default="numba,numpy",
        help="tinydl kernel variants to time (default numba,numpy)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds (default 2)")
    parser.add_argument("--worker", choices=("tinydl", "torch"), help=argparse.SUPPRESS)
    common.add_common_args(parser, steps=20)
    args = parser.parse_args(argv)
    from tinydl.backend.kernels import available_kernels

    variants = [v.strip() for v in args.kernels.split(",") if v.strip()]
    bad = [v for v in variants if v not in available_kernels()]
    if bad or not variants:
        parser.error(f"--kernels: unavailable {bad or variants}; choose from numba,numpy")
    if min(args.steps, args.threads, args.rounds) < 1 or args.warmup < 0:
        parser.error("--steps, --threads and --rounds must be >= 1, --warmup >= 0")
    if args.worker:
        print(json.dumps(measure(args.worker, args, variants)))
        return 0
    have_torch = importlib.util.find_spec("torch") is not None
    info = common.machine_info(args.threads)
    print("\n".join(common.header_lines(info)), flush=True)
    rows, notes = run(args, have_torch, variants)
    headers = [
        "op",
        "shape",
        "pass",
        *(f"tinydl {v} ms" for v in variants),
        "torch ms",
        *(f"{v}/torch" for v in variants),
        "GFLOP/s",
        "of GEMM",
    ]
    table = common.format_table(headers, rows)
    print("\n" + table)
    if not have_torch:
        notes.append("PyTorch is not installed: no reference column (pip install torch).")
    if args.write:
        path = common.write_results(
            "Kernels: conv2d, max-pool, linear (`kernels`)", info, table, notes
        )
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
