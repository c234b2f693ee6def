"""Forward + backward of the sequence layers, tinydl beside PyTorch CPU: LSTM, GRU and a
Transformer encoder layer on a batch of 32 sequences of 64 steps of 256 features.

One call: the layer's forward in training mode, ``(out * out).mean()``, ``zero_grad`` and
``backward`` (parameter gradients; the input needs none). Each (framework, case) runs in its own
process, alternated round by round, with the same number of threads.
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

DESCRIPTION = "ms per forward+backward of LSTM, GRU, TransformerEncoderLayer, tinydl vs PyTorch"
BATCH, SEQ, FEATURES = 32, 64, 256
CASES = {  # name -> (what it is, tinydl layer, torch layer), both batch_first
    "lstm": ("LSTM(256, 256)", "LSTM", "LSTM"),
    "gru": ("GRU(256, 256)", "GRU", "GRU"),
    "transformer": (
        "TransformerEncoderLayer(256, 8, 1024, dropout 0.1)",
        "TransformerEncoderLayer",
        "TransformerEncoderLayer",
    ),
}


def _layer(nn, case: str):
    kind = CASES[case][1]
    if kind == "TransformerEncoderLayer":
        return nn.TransformerEncoderLayer(FEATURES, 8, 1024, dropout=0.1, batch_first=True)
    return getattr(nn, kind)(FEATURES, FEATURES, batch_first=True)


def _output(y):
    return y[0] if isinstance(y, tuple) else y


def make_step(framework: str, case: str, x: np.ndarray):
    """``(step, n_params)``: one forward + backward of ``case`` on ``x``."""
    if framework == "torch":
        import torch

        torch.manual_seed(0)
        layer, xt = _layer(torch.nn, case).train(), torch.from_numpy(x)
    else:
        import tinydl as td

        td.manual_seed(0)
        layer, xt = _layer(td.layers, case).train(), td.tensor(x)

    def step():
        out = _output(layer(xt))
        loss = (out * out).mean()
        layer.zero_grad()
        loss.backward()

    return step, sum(int(np.prod(tuple(p.shape))) for p in layer.parameters())


def measure(framework: str, case: str, steps: int, warmup: int, threads: int) -> dict:
    if framework == "torch":
        import torch

        blas = common.limit_threads(threads, torch)
    else:
        import tinydl  # noqa: F401 - so that limit_threads sets tinydl's threads too

        blas = common.limit_threads(threads)
    x = np.random.default_rng(0).standard_normal((BATCH, SEQ, FEATURES)).astype(np.float32)
    step, n_params = make_step(framework, case, x)
    result = common.summarize(common.time_calls(step, steps, warmup))
    result.update(framework=framework, case=case, params=n_params, thread_limit=blas)
    return result


def _run_worker(framework: str, case: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.sequence", "--worker", framework, "--cases", case]
    cmd += [
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
    ]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        cmd, cwd=root, env=common.thread_env(args.threads), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker {framework}/{case} failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _combine(runs: list[dict]) -> dict:
    ms = [r["ms"] for r in runs]
    return {**runs[0], "ms": float(np.median(ms)), "lo": min(ms), "hi": max(ms), "rounds": ms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sequence", description=DESCRIPTION)
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES)
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    common.add_common_args(parser, steps=10)
    parser.add_argument("--worker", choices=("tinydl", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        parser.error(f"--cases: choose from {', '.join(CASES)}, got {args.cases!r}")
    if args.worker:
        print(json.dumps(measure(args.worker, cases[0], args.steps, args.warmup, args.threads)))
        return 0
    have_torch = importlib.util.find_spec("torch") is not None
    info = common.machine_info(args.threads)
    print(f"input ({BATCH}, {SEQ}, {FEATURES}) float32; {args.warmup} warm-up + {args.steps} timed")
    print("\n".join(common.header_lines(info)), flush=True)
    rows = []
    for case in cases:
        runs = {"tinydl": [], "torch": []}
        for _ in range(args.rounds):  # NOTE: alternated, so a noisy stretch hits both
            if have_torch:
                runs["torch"].append(_run_worker("torch", case, args))
            runs["tinydl"].append(_run_worker("tinydl", case, args))
        ours = _combine(runs["tinydl"])
        ref = _combine(runs["torch"]) if have_torch else None
        ratio = f"{ours['ms'] / ref['ms']:.2f}x" if ref else "-"
        ref_cells = [f"{ref['ms']:.1f}", f"{ref['lo']:.0f}-{ref['hi']:.0f}"] if ref else ["-", "-"]
        rows.append(
            [
                CASES[case][0],
                f"{ours['params']:,}",
                f"{ours['ms']:.1f}",
                f"{ours['lo']:.0f}-{ours['hi']:.0f}",
                *ref_cells,
                ratio,
            ]
        )
        theirs = [round(m, 1) for m in ref["rounds"]] if ref else "-"
        mine = [round(m, 1) for m in ours["rounds"]]
        print(f"  {case}: tinydl {mine} ms, torch {theirs} ms", flush=True)
    headers = [
        "layer (batch_first)",
        "params",
        "tinydl ms",
        "rounds",
        "torch ms",
        "rounds",
        "tinydl/torch",
    ]
    table = common.format_table(headers, rows)
    print("\n" + table)
    notes = [
        f"Input ({BATCH}, {SEQ}, {FEATURES}) float32, training mode; one call = forward, "
        "(out * out).mean(), zero_grad, backward (parameter gradients).",
        f"ms: median over {args.rounds} alternated rounds (each framework in a fresh process "
        f"per round) of the median of {args.steps} timed calls after {args.warmup} warm-up; "
        "rounds: the lowest and highest round. tinydl/torch > 1 means tinydl is slower.",
    ]
    if not have_torch:
        notes.append("PyTorch is not installed: no reference column (pip install torch).")
    if args.write:
        print(
            f"appended to {common.write_results('Sequence layers (`sequence`)', info, table, notes)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
