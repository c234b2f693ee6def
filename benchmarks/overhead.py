"""Python overhead per op: tiny tensors, so the time is the framework's own bookkeeping
(argument checks, graph recording, the backward engine), not arithmetic. tinydl beside PyTorch.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import common

DESCRIPTION = "microseconds per op on tiny tensors (framework overhead), tinydl vs PyTorch"


def _cases(framework):
    """``{name: (closure, ops per call)}`` on tiny float32 inputs."""
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((2, 4, 4), dtype=np.float32)
    x_np = rng.standard_normal((4, 8), dtype=np.float32)
    w1_np, w2_np = rng.standard_normal((8, 8), dtype=np.float32), rng.standard_normal((2, 8))
    if framework == "torch":
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy
        no_grad = torch.no_grad
    else:
        import tinydl as td
        import tinydl.functional as F

        t = td.tensor
        no_grad = td.no_grad
    a, b, x = t(a_np), t(b_np), t(x_np)
    ag, bg = t(a_np.copy()).requires_grad_(), t(b_np.copy()).requires_grad_()
    w1 = t(w1_np).requires_grad_()
    w2 = t(w2_np.astype(np.float32)).requires_grad_()
    y = t(np.array([0, 1, 0, 1]))

    def mul_no_grad():
        with no_grad():
            a * b

    def mul_graph():
        ag * bg

    def mul_fwd_bwd():
        (ag * bg).sum().backward()

    def tiny_step():  # linear, relu, linear, cross-entropy, backward: 5 ops forward
        for p in (w1, w2):
            p.grad = None
        F.cross_entropy(F.linear(F.relu(F.linear(x, w1)), w2), y).backward()

    return {
        "a * b (no_grad)": (mul_no_grad, 1),
        "a * b (recording the graph)": (mul_graph, 1),
        "(a * b).sum().backward()": (mul_fwd_bwd, 2),
        "tiny MLP step: 4 ops + cross-entropy, backward": (tiny_step, 5),
    }


def _check_ns(n: int = 200_000) -> tuple[float, float]:
    """Nanoseconds of the off-path check of ``Function.apply`` (a module-global read), beside a
    ``ContextVar.get()`` (the alternative it was chosen over)."""
    import contextvars
    import timeit

    from tinydl import profiler

    var = contextvars.ContextVar("probe", default=None)
    ns = {"profiler": profiler, "var": var}
    base = min(timeit.repeat("pass", number=n, repeat=5)) / n * 1e9
    gate = min(timeit.repeat("profiler._open and 1", number=n, repeat=5, globals=ns)) / n * 1e9
    cvar = min(timeit.repeat("var.get()", number=n, repeat=5, globals=ns)) / n * 1e9
    return gate - base, cvar - base


def _profile_rows(args) -> tuple[list[str], list[list]]:
    """Each case unprofiled and inside ``td.profile()``: the cost per recorded call."""
    import tinydl as td

    rows = []
    for name, (fn, _) in _cases("tinydl").items():
        off = common.summarize(common.time_calls(fn, args.steps, args.warmup))["ms"] * 1e3
        with td.profile() as prof:
            on = common.summarize(common.time_calls(fn, args.steps, args.warmup))["ms"] * 1e3
        per_call = sum(r["calls"] for r in prof.rows()) / (args.steps + args.warmup)
        row = [name, f"{off:.1f}", f"{on:.1f}", f"{per_call:g}", f"{(on - off) / per_call:.1f}"]
        rows.append(row)
        print("  " + " | ".join(row), flush=True)
    headers = ["case", "off us/call", "profiled us/call", "recorded/call", "extra us/recorded"]
    return headers, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks overhead", description=DESCRIPTION)
    common.add_common_args(parser, steps=2000)
    parser.add_argument(
        "--profile", action="store_true", help="the cost of td.profile(), off and on, per op"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps and --threads must be >= 1, --warmup >= 0")
    if args.profile:
        common.start(args)
        headers, rows = _profile_rows(args)
        gate, cvar = _check_ns()
        print("\n" + common.format_table(headers, rows))
        print(
            f"\noff: the check per op costs {gate:.0f} ns (a ContextVar.get() would cost "
            f"{cvar:.0f} ns); on: the last column, per recorded call (op, backward node, "
            "optimizer step), medians of the calls"
        )
        return 0
    info, torch_mod, _ = common.start(args)
    have_torch = torch_mod is not None
    ours = _cases("tinydl")
    ref = _cases("torch") if have_torch else {}
    rows = []
    for name, (fn, n_ops) in ours.items():
        us = common.summarize(common.time_calls(fn, args.steps, args.warmup))["ms"] * 1e3
        row = [name, f"{us:.1f}", f"{us / n_ops:.1f}"]
        if name in ref:
            rus = common.summarize(common.time_calls(ref[name][0], args.steps, args.warmup))
            rus = rus["ms"] * 1e3
            row += [f"{rus:.1f}", f"{us / rus:.2f}x"]
        else:
            row += ["-", "-"]
        rows.append(row)
        print("  " + " | ".join(row), flush=True)
    headers = ["case", "tinydl us/call", "tinydl us/op", "torch us/call", "tinydl/torch"]
    table = common.format_table(headers, rows)
    print("\n" + table)
    notes = [
        f"Median of {args.steps} calls after {args.warmup} warm-up calls, tensors of 16-32 "
        "float32 elements: the time is per-op bookkeeping, not arithmetic.",
        "us/op divides a call by the ops it runs forward (backward ops not counted).",
    ]
    if args.write:
        path = common.write_results("Python overhead per op (`overhead`)", info, table, notes)
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
