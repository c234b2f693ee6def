"""Data-parallel MnistCNN on this machine: 1 rank vs 2 MPI ranks, and the all-reduce's share.

A step is what ``tinydl train --distributed`` does per global batch of 128: each rank runs
forward, cross-entropy, backward on its share (128 / ranks images), DDP all-reduces the
gradients, Adam steps. Configurations, each in its own processes, alternated round by round:

- ``1 rank x 2 threads``: one process using both cores (tinydl's threads and BLAS);
- ``1 rank x 1 thread``: the issue's baseline for the 2-rank speed-up;
- ``2 ranks x 1 thread``: DDP with buckets (25 MiB: MnistCNN's gradients in one call), and
  with one all-reduce per array (``bucket_cap_mb=0``).

In the ranks, ``all-reduce`` is the time inside ``reduce_gradients`` (packing into the bucket,
the MPI call, waiting for the slower rank); ``alone`` times the bare ``Allreduce`` of the same
bucket after a barrier. The notes turn the measured compute time and gradient size into an
estimate of the step time on N machines at 10 and 100 Gb/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import common
from .epoch import LR, load_batches

DESCRIPTION = "MnistCNN step time on 1 vs 2 MPI ranks, all-reduce time and share"
GLOBAL_BATCH = 128
CONFIGS = [  # (label, ranks, threads per rank, bucket_cap_mb)
    ("1 rank x 2 threads", 1, 2, 25.0),
    ("1 rank x 1 thread", 1, 1, 25.0),
    ("2 ranks x 1 thread, bucketed", 2, 1, 25.0),
    ("2 ranks x 1 thread, per array", 2, 1, 0.0),
]


def worker(data: Path, steps: int, warmup: int, bucket_mb: float) -> dict | None:
    """One rank's timed steps; rank 0 returns the result (None on the others)."""
    import tinydl as td
    import tinydl.distributed as dist
    import tinydl.functional as F
    from tinydl.layers import MnistCNN
    from tinydl.optim import Adam

    dist.init()
    dist.set_threads_per_rank()  # TINYDL_NUM_THREADS, set by the launcher, wins
    rank, world = dist.get_rank(), dist.get_world_size()
    with np.load(data) as f:
        share = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
        batches = [(td.tensor(x[share]), td.tensor(y[share])) for x, y in zip(f["x"], f["y"])]
    td.manual_seed(0)
    model = MnistCNN().train()
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=bucket_mb)
    opt = Adam(model.parameters(), lr=LR)
    reduce_times: list[float] = []
    reduce = ddp.reduce_gradients

    def timed_reduce():
        t = time.perf_counter()
        reduce()
        reduce_times.append(time.perf_counter() - t)

    ddp.reduce_gradients = timed_reduce  # what the gradient hooks queue
    state = {"i": 0}

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = F.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    seconds = common.time_calls(step, steps, warmup)
    result = common.summarize(seconds)
    if world > 1:
        timed = np.array(reduce_times[warmup:])
        result["allreduce_ms"] = float(np.median(timed) * 1e3)
        flats = [b.flat for b in ddp._buckets]
        alone = []
        for _ in range(20):
            dist.barrier()
            t = time.perf_counter()
            for flat in flats:
                dist.all_reduce(flat)
            alone.append(time.perf_counter() - t)
        result["alone_ms"] = float(np.median(alone) * 1e3)
        result["buckets"] = len(flats)
        result["grad_mib"] = sum(f.nbytes for f in flats) / 2**20
    result["params"] = model.num_parameters()
    return result if rank == 0 else None


def _launch(args, data: Path, ranks: int, threads: int, bucket_mb: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.distributed", "--worker", "--data", str(data)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--bucket-mb", str(bucket_mb)]
    if ranks > 1:
        mpiexec = Path(sys.executable).with_name("mpiexec")
        cmd = [str(mpiexec), "-n", str(ranks), cmd[0], "-m", "mpi4py", *cmd[1:]]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        cmd, cwd=root, env=common.thread_env(threads), capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _combine(runs: list[dict]) -> dict:
    """Median of the rounds' medians, the lowest and highest round as the spread."""
    out = dict(runs[0])
    ms = [r["ms"] for r in runs]
    out.update(ms=float(np.median(ms)), lo=min(ms), hi=max(ms), rounds=ms)
    for key in ("allreduce_ms", "alone_ms"):
        if key in out:
            out[key] = float(np.median([r[key] for r in runs]))
    return out


def _estimate(compute_ms: float, grad_mib: float, buckets: int) -> list[str]:
    """Ring all-reduce on N machines: each sends and receives 2 (N-1)/N of the gradients, in
    2 (N-1) messages per bucket; alpha = 30 us per message (TCP; ~5 us with RDMA)."""
    lines = []
    for gbit in (10, 100):
        rate = gbit * 1e9 / 8  # bytes/s
        cells = []
        for n in (2, 4, 8, 32):
            comm = 2 * (n - 1) / n * grad_mib * 2**20 / rate + 2 * (n - 1) * buckets * 30e-6
            eff = compute_ms / (compute_ms + comm * 1e3)
            cells.append(f"N={n}: +{comm * 1e3:.2f} ms, {eff:.0%} efficiency")
        lines.append(f"{gbit} Gb/s: " + "; ".join(cells))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks distributed", description=DESCRIPTION
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    common.add_common_args(parser, steps=20)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bucket-mb", type=float, default=25.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.data, args.steps, args.warmup, args.bucket_mb)
        if result is not None:
            print(json.dumps(result))
        return 0
    if not Path(sys.executable).with_name("mpiexec").exists():
        parser.error(f"no mpiexec beside {sys.executable}: pip install 'tinydl[mpi]'")
    info = common.machine_info(args.threads)
    n_batches = min(args.steps + args.warmup, 30)
    xs, ys, source = load_batches(n_batches, GLOBAL_BATCH)
    print(
        f"data: {source}; global batch {GLOBAL_BATCH}; {args.warmup} warm-up + {args.steps} timed"
    )
    print("\n".join(common.header_lines(info)), flush=True)
    runs = {c[0]: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="tinydl-bench-") as tmp:
        data = Path(tmp) / "batches.npz"
        np.savez(data, x=xs, y=ys)
        for _ in range(args.rounds):  # NOTE: alternated, so a noisy stretch hits every config
            for label, ranks, threads, bucket in CONFIGS:
                runs[label].append(_launch(args, data, ranks, threads, bucket))
                print(f"  {label}: {runs[label][-1]['ms']:.1f} ms", flush=True)
    results = {label: _combine(r) for label, r in runs.items()}
    base = results["1 rank x 1 thread"]["ms"]
    rows = []
    for label, _, _, _ in CONFIGS:
        r = results[label]
        spread = f"{r['lo']:.0f}-{r['hi']:.0f}"
        ar = (
            f"{r['allreduce_ms']:.2f} ({r['allreduce_ms'] / r['ms']:.1%})"
            if "allreduce_ms" in r
            else "-"
        )
        alone = f"{r['alone_ms']:.2f} ({r['buckets']} calls)" if "alone_ms" in r else "-"
        rows.append(
            [
                label,
                f"{r['ms']:.1f}",
                spread,
                f"{GLOBAL_BATCH / r['ms'] * 1e3:.0f}",
                f"{base / r['ms']:.2f}x",
                ar,
                alone,
            ]
        )
    headers = [
        "configuration",
        "ms/step",
        "rounds",
        "img/s",
        "vs 1x1",
        "all-reduce ms (share)",
        "alone ms",
    ]
    table = common.format_table(headers, rows)
    print("\n" + table)
    bucketed = results["2 ranks x 1 thread, bucketed"]
    compute = bucketed["ms"] - bucketed["allreduce_ms"]  # this machine's step, less the reduce
    notes = [
        f"Data: {source}. MnistCNN ({bucketed['params']} parameters, {bucketed['grad_mib']:.2f} "
        f"MiB of float32 gradients), Adam(lr={LR}), global batch {GLOBAL_BATCH} split evenly "
        "over the ranks; one step = forward, loss, zero_grad, backward + all-reduce, Adam, "
        "loss.item().",
        f"ms/step: median of {args.rounds} alternated rounds (each a fresh set of processes) "
        f"of the median of {args.steps} timed steps after {args.warmup} warm-up; rounds: the "
        "lowest and highest round. vs 1x1: speed-up over one rank with one thread.",
        "all-reduce: median time per step inside DDP's reduce_gradients on rank 0 (copy into "
        "the bucket, MPI Allreduce, waiting for the other rank), and its share of the step; "
        "alone: the bare Allreduce of the same buckets after a barrier.",
        "Scaling on paper (weak scaling: N machines like this one, each running the 2-rank "
        f"step on its own global batch of {GLOBAL_BATCH}, {compute:.0f} ms of compute; ring all-reduce, 30 us per message, no overlap with "
        "backward since tinydl reduces after the backward pass): "
        + " | ".join(_estimate(compute, bucketed["grad_mib"], bucketed["buckets"])),
    ]
    for n in notes:
        print("- " + n)
    if args.write:
        print(
            f"appended to {common.write_results('Distributed data parallel', info, table, notes)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
