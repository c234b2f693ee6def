"""Training-step time of each model zoo network, tinydl beside PyTorch CPU.

One step is what ``tinydl train`` does per batch: forward, cross-entropy, ``zero_grad``,
backward, Adam update, ``loss.item()``. Batches of 128 MNIST images (from ``$TINYDL_DATA`` or
the cache; random bytes of the same shape when absent) are prepared once and fed to both
frameworks, so the data pipeline is not part of the step (see ``data_pipeline``).

Each (framework, model) runs in its own subprocess, so the peak resident memory of one does
not hide in the other's, and only one framework is imported in it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import common

STEPS_PER_EPOCH = 469  # ceil(60000 / 128)
MODEL_NAMES = ("mlp", "lenet", "cnn", "resnet", "vgg")
LR = 2e-3  # tinydl train's default
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
DESCRIPTION = "ms per training step, s per epoch and img/s of each model, tinydl vs PyTorch"


def load_batches(n_batches: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``n_batches`` shuffled, normalized MNIST batches (float32 images, int64 labels) and the
    data's source; random images and labels of the same shape when MNIST is not found."""
    from tinydl.data import MNIST, DatasetNotFoundError

    rng = np.random.default_rng(0)
    n = n_batches * batch_size
    try:
        mnist = MNIST(train=True)
        idx = rng.permutation(len(mnist))[:n]
        images, labels, source = mnist.data[idx], mnist.targets[idx], f"MNIST ({mnist.root})"
    except DatasetNotFoundError:
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        source = "random data of MNIST's shape (MNIST not found: set $TINYDL_DATA)"
    x = (images.astype(np.float32) / 255 - MNIST_MEAN) / MNIST_STD
    x = x.reshape(n_batches, batch_size, 1, 28, 28)
    return x, labels.astype(np.int64).reshape(n_batches, batch_size), source


def _tinydl_step(name: str, xs: np.ndarray, ys: np.ndarray):
    import tinydl as td
    import tinydl.functional as F
    from tinydl.layers import MODELS
    from tinydl.optim import Adam

    td.manual_seed(0)
    model = MODELS[name]().train()
    opt = Adam(model.parameters(), lr=LR)
    batches = [(td.tensor(x), td.tensor(y)) for x, y in zip(xs, ys)]
    state = {"i": 0, "losses": [], "phases": []}

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        state["losses"].append(loss.item())
        state["phases"].append((t1 - t0, t2 - t1, time.perf_counter() - t2))

    return step, state, model.num_parameters()


def _torch_step(name: str, xs: np.ndarray, ys: np.ndarray):
    from .torch_models import TORCH_MODELS, torch

    torch.manual_seed(0)
    model = TORCH_MODELS[name]().train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in zip(xs, ys)]
    state = {"i": 0, "losses": [], "phases": []}

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        state["losses"].append(loss.item())
        state["phases"].append((t1 - t0, t2 - t1, time.perf_counter() - t2))

    return step, state, sum(p.numel() for p in model.parameters())


def make_step(framework: str, name: str, xs: np.ndarray, ys: np.ndarray):
    """``(step, state, n_params)``: a closure doing one Adam training step of model ``name`` on
    the next of the batches ``xs``/``ys`` (cycled); ``state["losses"]`` collects the losses."""
    make = {"tinydl": _tinydl_step, "torch": _torch_step}[framework]
    return make(name, xs, ys)


def measure(framework: str, name: str, data: Path, steps: int, warmup: int, threads: int):
    """Time ``steps`` training steps of one model in this process; returns a result dict."""
    with np.load(data) as f:
        xs, ys = f["x"], f["y"]
    if framework == "torch":
        from .torch_models import torch

        blas = common.limit_threads(threads, torch)
    else:
        import tinydl.layers  # noqa: F401 - imported before the baseline, as torch is

        blas = common.limit_threads(threads)
    base_rss = common.current_rss_mib()
    step, state, n_params = make_step(framework, name, xs, ys)
    result = common.summarize(common.time_calls(step, steps, warmup))
    result.update(
        framework=framework,
        model=name,
        params=int(n_params),
        peak_rss_mib=common.peak_rss_mib(),
        base_rss_mib=base_rss,
        first_loss=state["losses"][0],
        last_loss=state["losses"][-1],
        thread_limit=blas,
        # medians of the timed steps' phases: forward + loss, zero_grad + backward, step + item
        phases_ms=[float(np.median(p) * 1e3) for p in zip(*state["phases"][warmup:])],
    )
    if framework == "tinydl":
        from tinydl.backend import active_kernels

        result["kernels"] = active_kernels()
        result["ceiling"] = common.gemm_rate(10, 2)  # after the timing: no effect on the peak
    return result


def step_gflop(name: str, batch: int) -> float:
    """GFLOP of one training step of model ``name``: 2 x the multiply-adds of the forward, of
    the weight gradients and of the input gradients (none for the first layer's input)."""
    import tinydl as td
    from tinydl.layers import MODELS

    macs = [r["mult_adds"] or 0 for r in td.summary(MODELS[name](), (1, 1, 28, 28)).layers]
    first = next((m for m in macs if m), 0)
    return 2 * (3 * sum(macs) - first) * batch / 1e9


def _run_worker(framework, name, data, args, kernels=None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.epoch", "--worker", framework, "--data", str(data)]
    cmd += ["--models", name, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--threads", str(args.threads)]
    root = Path(__file__).resolve().parents[1]
    env = common.thread_env(args.threads)
    if kernels:
        env["TINYDL_KERNELS"] = kernels
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {framework}/{name} failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _combine(runs: list[dict]) -> dict:
    """One result from the rounds of a (framework, model): the median of the rounds' medians,
    with the lowest and highest round as the spread, phases as medians, the largest peak."""
    ms = [r["ms"] for r in runs]
    out = dict(runs[0])
    out.update(
        ms=float(np.median(ms)), p25=min(ms), p75=max(ms), rounds=ms,
        ceiling=float(np.median([r.get("ceiling", np.nan) for r in runs])),
        phases_ms=[float(np.median(p)) for p in zip(*(r["phases_ms"] for r in runs))],
        peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
        base_rss_mib=min(r["base_rss_mib"] for r in runs),
    )
    return out


def _ms(r: dict) -> str:
    spread = (r["p75"] - r["p25"]) / r["ms"] * 100
    return f"{r['ms']:.1f} ±{spread:.0f}%"


def _phases(r: dict | None) -> str:
    return "-" if r is None else " / ".join(f"{p:.1f}" for p in r["phases_ms"])


def _row(name: str, ours: dict, ref: dict | None, batch: int) -> list:
    def cols(r):
        if r is None:
            return ["-"] * 4
        return [
            _ms(r),
            f"{r['ms'] * STEPS_PER_EPOCH / 1e3:.1f}",
            f"{batch * 1e3 / r['ms']:.0f}",
            f"{r['peak_rss_mib']:.0f} (+{r['peak_rss_mib'] - r['base_rss_mib']:.0f})",
        ]

    ratio = f"{ours['ms'] / ref['ms']:.2f}x" if ref else "-"
    rate = ours["gflop"] / ours["ms"] * 1e3
    gemm = f"{rate:.0f} ({rate / ours['ceiling']:.0%})"
    a, b = cols(ours), cols(ref)
    label = f"{name} ({ours['kernels']})"
    return [label, f"{ours['params']:,}", a[0], b[0], ratio, _phases(ours), _phases(ref),
            gemm, a[1], b[1], a[2], b[2], a[3], b[3]]


HEADERS = [
    "model (tinydl kernels)",
    "params",
    "tinydl ms/step",
    "torch ms/step",
    "tinydl/torch",
    "tinydl fwd / bwd / opt ms",
    "torch fwd / bwd / opt ms",
    "tinydl GFLOP/s (of GEMM)",
    "tinydl s/epoch",
    "torch s/epoch",
    "tinydl img/s",
    "torch img/s",
    "tinydl peak MiB",
    "torch peak MiB",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks epoch", description=DESCRIPTION)
    parser.add_argument(
        "--models",
        default=",".join(MODEL_NAMES),
        help="comma-separated subset of mlp,lenet,cnn,resnet,vgg (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--kernels",
        default="numba,numpy",
        help="tinydl kernel variants, one row each (default numba,numpy)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="alternated rounds, each framework in a fresh process per round (default 3)",
    )
    common.add_common_args(parser, steps=20)
    parser.add_argument("--worker", choices=("tinydl", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad or not models:
        parser.error(f"--models: unknown {bad or models}; choose from {', '.join(MODEL_NAMES)}")
    if min(args.steps, args.threads, args.batch_size, args.rounds) < 1 or args.warmup < 0:
        parser.error("--steps, --threads, --batch-size and --rounds must be >= 1, --warmup >= 0")
    variants = [v.strip() for v in args.kernels.split(",") if v.strip()]
    if not variants or any(v not in ("numba", "numpy") for v in variants):
        parser.error(f"--kernels: choose from numba,numpy, got {args.kernels!r}")

    if args.worker:
        result = measure(args.worker, models[0], args.data, args.steps, args.warmup, args.threads)
        print(json.dumps(result))
        return 0

    have_torch = importlib.util.find_spec("torch") is not None
    info = common.machine_info(args.threads)
    n_batches = min(args.steps + args.warmup, 50)  # cycled when there are more steps
    xs, ys, source = load_batches(n_batches, args.batch_size)
    print(f"data: {source}; batch {args.batch_size}; {args.warmup} warm-up + {args.steps} timed")
    print("\n".join(common.header_lines(info)), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinydl-bench-") as tmp:
        data = Path(tmp) / "batches.npz"
        np.savez(data, x=xs, y=ys)
        for name in models:
            # NOTE: each framework in its own process, alternated round by round, so that a
            # noisy stretch of the shared machine hits both (one slow reference run once turned
            # a 2x into a 1.4x headline)
            runs = {"torch": [], **{k: [] for k in variants}}
            for _ in range(args.rounds):
                if have_torch:
                    runs["torch"].append(_run_worker("torch", name, data, args))
                for kernels in variants:
                    runs[kernels].append(_run_worker("tinydl", name, data, args, kernels))
            ref = _combine(runs["torch"]) if have_torch else None
            for kernels in variants:
                ours = _combine(runs[kernels])
                ours["gflop"] = step_gflop(name, args.batch_size)
                rows.append(_row(name, ours, ref, args.batch_size))
                print(
                    f"  {name} ({kernels}): tinydl {_ms(ours)} ms"
                    + (f", torch {_ms(ref)} ms" if ref else "")
                    + f" (rounds: {[round(m, 1) for m in ours['rounds']]}"
                    + (f" vs {[round(m, 1) for m in ref['rounds']]})" if ref else ")"),
                    flush=True,
                )
    table = common.format_table(HEADERS, rows)
    print("\n" + table)
    notes = [
        f"Data: {source}. Batch {args.batch_size}, Adam(lr={LR}), train mode; one step = "
        "forward, cross-entropy, zero_grad, backward, optimizer step, loss.item().",
        f"ms/step: each framework in its own process, {args.rounds} alternated rounds of "
        f"{args.steps} timed steps after {args.warmup} warm-up steps; the median of the rounds' "
        "medians, ± the range of the rounds over it. Phases (medians): forward + loss / "
        "zero_grad + backward / optimizer step + loss.item(). s/epoch = ms/step x "
        f"{STEPS_PER_EPOCH} steps; img/s = {args.batch_size} / step time. tinydl/torch > 1 "
        "means tinydl is slower.",
        "Peak MiB: peak resident memory (VmHWM; getrusage maxrss off Linux) of a separate process per framework and model (Python, "
        f"the framework and the {xs.nbytes / 2**20:.0f} MiB of batches); in brackets, the "
        "growth over the process's resident memory before the model was built (model, activations, "
        "gradients, optimizer state).",
        "GFLOP/s: the step's multiply-adds x 2 (forward, weight and input gradients of conv and "
        "linear layers, from td.summary; element-wise work not counted) over tinydl's step time; "
        "in brackets, the share of the float32 GEMM ceiling (NumPy BLAS, 1024^3, same threads) "
        "measured in each tinydl worker.",
    ]
    if not have_torch:
        notes.append("PyTorch is not installed: no reference column (pip install torch).")
    if args.write:
        path = common.write_results("Training step per model (`epoch`)", info, table, notes)
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
