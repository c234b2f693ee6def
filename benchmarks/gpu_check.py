"""The device check of tinydl's CuPy backend: one run on an NVIDIA GPU, under 8 minutes on an H100.

    python benchmarks/gpu_check.py            (from the repository root; or benchmarks/gpu_check.sh)

1. prints the GPU, the driver, CUDA, CuPy and PyTorch;
2. runs the device-parametrised tests (functional, layer, optimizer, op table: each on cpu and
   cuda), ``tests/gpu`` and the suites the backend touches, hypothesis profile ``dev``, capped
   at ``--test-timeout`` seconds;
3. times conv2d forward and forward+backward at the four shapes of the kernels issue, tinydl
   beside PyTorch CUDA, with a CUDA synchronisation closing every timed call;
4. times one MnistCNN training epoch (60,000 MNIST images, batch 128, Adam, dropout on) with the
   data copied onto the GPU once, tinydl beside PyTorch CUDA running the same architecture on
   the same batches; the only host synchronisation is the loss read at the end of the epoch.

PyTorch runs in float32 with TF32 off (``torch fp32``, the ratio's reference: tinydl's GEMMs are
float32 too); its default, TF32 convolutions, is shown beside for information. Tables go to
stdout and, when ``$OUT`` is set, to ``$OUT/gpu_check.md`` (a section ready for
``benchmarks/RESULTS.md``), ``$OUT/gpu_check.json`` and the test log ``$OUT/pytest_gpu.log``.

MNIST: when ``$TINYDL_DATA/mnist`` holds the training files, they are first copied next to this
script into ``benchmarks/gpu_data/mnist/`` (ignored by git through its own ``.gitignore``), so a
copy of the working tree can carry them to the GPU machine (``carry=["benchmarks/gpu_data"]``);
there they are read from that folder. Without them the epoch runs on random images.

Without CuPy or a GPU the script says what is missing and exits with status 0, measuring
nothing. It exits with 1 when a test failed (the benchmarks still run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout, tinydl not installed
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.gpu_tests import run_tests  # noqa: E402
from benchmarks.kernels import CONV_SHAPES  # noqa: E402

DATA = HERE / "gpu_data"
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
BATCH, LR, STEPS_PER_EPOCH = 128, 2e-3, 469
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def log(text: str = "") -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------- data


def stage_mnist() -> str:
    """Copy the MNIST training files from ``$TINYDL_DATA`` next to this script (once), and
    point ``$TINYDL_DATA`` at the staged copy when there is one."""
    staged = DATA / "mnist"
    source = os.environ.get("TINYDL_DATA")
    if source and Path(source).resolve() != DATA.resolve():
        found = []
        for stem in MNIST_STEMS:
            cands = [Path(source) / "mnist" / f"{stem}{ext}" for ext in (".gz", "")]
            found += [c for c in cands if c.is_file()][:1]
        if len(found) == len(MNIST_STEMS):
            staged.mkdir(parents=True, exist_ok=True)
            (DATA / ".gitignore").write_text("# staged MNIST for gpu_check.py: never commit\n*\n")
            for f in found:
                target = staged / f.name
                if not target.is_file() or target.stat().st_size != f.stat().st_size:
                    target.unlink(missing_ok=True)
                    shutil.copyfile(f, target)
    if all(any((staged / f"{s}{e}").is_file() for e in (".gz", "")) for s in MNIST_STEMS):
        os.environ["TINYDL_DATA"] = str(DATA)
        return f"MNIST staged in {staged.relative_to(ROOT)}"
    return "MNIST not found (set $TINYDL_DATA, or carry benchmarks/gpu_data)"


def load_mnist() -> tuple[np.ndarray, np.ndarray, str]:
    """The 60,000 training images, normalized float32 (N, 1, 28, 28), and int64 labels."""
    from tinydl.data import MNIST, DatasetNotFoundError

    try:
        mnist = MNIST(train=True)
        images, labels, source = mnist.data, mnist.targets, f"MNIST ({mnist.root})"
    except DatasetNotFoundError:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        labels, source = rng.integers(0, 10, 60000), "random images of MNIST's shape"
    x = ((images.astype(np.float32) / 255 - MNIST_MEAN) / MNIST_STD).reshape(-1, 1, 28, 28)
    return x, labels.astype(np.int64), source


# ----------------------------------------------------------------------------- the machine


def machine(cp) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info = {
        "gpu": name,
        "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "multiprocessors": props["multiProcessorCount"],
        "driver": cp.cuda.runtime.driverGetVersion(),
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cupy": cp.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": common.machine_info(os.cpu_count() or 1)["machine"],
    }
    try:
        import torch

        info["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
        info["torch_sees_gpu"] = torch.cuda.is_available()
    except ImportError:
        info["torch"] = "not installed"
        info["torch_sees_gpu"] = False
    return info


# ----------------------------------------------------------------------------- tests


def _median_ms(fn, sync, steps: int, warmup: int) -> float:
    def call():
        fn()
        sync()

    return common.summarize(common.time_calls(call, steps, warmup))["ms"]


def _conv_closures(framework: str, device: str, n, cin, cout, h, k, p):
    rng = np.random.default_rng(0)
    oh = h + 2 * p - k + 1
    arrays = [rng.standard_normal(s, dtype=np.float32) * 0.1
              for s in ((n, cin, h, h), (cout, cin, k, k), (cout,), (n, cout, oh, oh))]
    if framework == "tinydl":
        import tinydl as td
        import tinydl.functional as F

        x, w, b = (td.tensor(a, requires_grad=True, device=device) for a in arrays[:3])
        g, no_grad = td.tensor(arrays[3], device=device), td.no_grad
    else:
        import torch
        import torch.nn.functional as F

        x, w, b = (torch.tensor(a, device=device, requires_grad=True) for a in arrays[:3])
        g, no_grad = torch.tensor(arrays[3], device=device), torch.no_grad

    def fwd():
        with no_grad():
            F.conv2d(x, w, b, padding=p)

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, padding=p).backward(g)

    return fwd, fwd_bwd


def _syncs(device: str) -> dict:
    """The function that waits for each framework's queued work on ``device``."""
    import tinydl as td

    syncs = {"tinydl": td.cuda.synchronize if device == "cuda" else lambda: None}
    try:
        import torch
    except ImportError:
        return syncs
    wait = torch.cuda.synchronize if device == "cuda" else lambda: None
    return {**syncs, "torch fp32": wait, "torch tf32": wait}


def bench_conv(steps: int, warmup: int, torch_ok: bool, device: str = "cuda") -> list[dict]:
    syncs = _syncs(device)
    refs = ["tinydl"] + (["torch fp32", "torch tf32"] if torch_ok else [])
    rows = []
    for label, n, cin, cout, h, k, p in CONV_SHAPES:
        row = {"shape": f"({label}) N={n}, {cin}->{cout}, {h}x{h}, k{k} p{p}"}
        for ref in refs:
            if ref != "tinydl":
                _tf32(ref == "torch tf32")
            fwd, fwd_bwd = _conv_closures(ref.split()[0], device, n, cin, cout, h, k, p)
            row[f"{ref} fwd"] = _median_ms(fwd, syncs[ref], steps, warmup)
            row[f"{ref} fwd+bwd"] = _median_ms(fwd_bwd, syncs[ref], steps, warmup)
        rows.append(row)
        log(f"  conv {row['shape']}: " + ", ".join(
            f"{k} {v:.3f} ms" for k, v in row.items() if k.endswith("fwd+bwd")))
    return rows


def _tf32(on: bool) -> None:
    import torch

    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


# ----------------------------------------------------------------------------- one epoch


def _epoch_tinydl(x_host, y_host, device: str):
    import tinydl as td
    import tinydl.functional as F
    from tinydl.layers import MnistCNN
    from tinydl.optim import Adam

    td.manual_seed(0)
    model = MnistCNN().to(device).train()
    opt = Adam(model.parameters(), lr=LR)
    x, y = td.tensor(x_host, device=device), td.tensor(y_host, device=device)  # copied once
    rng = np.random.default_rng(0)

    def run(steps):
        perm = td.tensor(rng.permutation(len(x_host)), device=device)
        total = None
        for i in range(steps):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = loss.detach() if total is None else total + loss.detach()
        return total.item() / steps  # the one host synchronisation: logging

    return run


def _epoch_torch(x_host, y_host, device: str):
    import torch

    from benchmarks.torch_models import MnistCNN

    torch.manual_seed(0)
    model = MnistCNN().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.from_numpy(x_host).to(device), torch.from_numpy(y_host).to(device)
    rng = np.random.default_rng(0)

    def run(steps):
        perm = torch.from_numpy(rng.permutation(len(x_host))).to(device)
        total = None
        for i in range(steps):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = loss.detach() if total is None else total + loss.detach()
        return total.item() / steps

    return run


def bench_epoch(x, y, warmup_steps: int, torch_ok: bool, device: str = "cuda",
                steps: int = STEPS_PER_EPOCH) -> list[dict]:
    makers = {"tinydl": _epoch_tinydl}
    if torch_ok:
        makers["torch fp32"] = makers["torch tf32"] = _epoch_torch
    syncs = _syncs(device)
    rows = []
    for name, make in makers.items():
        if name.startswith("torch"):
            _tf32(name == "torch tf32")
        run, sync = make(x, y, device), syncs[name]
        run(warmup_steps)  # compiles kernels, warms the allocators and cuDNN
        sync()
        start = time.perf_counter()
        mean_loss = run(steps)
        sync()
        seconds = time.perf_counter() - start
        rows.append({"framework": name, "epoch_s": seconds * STEPS_PER_EPOCH / steps,
                     "ms_per_step": seconds * 1e3 / steps, "mean_loss": mean_loss})
        log(f"  epoch {name}: {seconds:.2f} s ({rows[-1]['ms_per_step']:.2f} ms/step), "
            f"mean loss {mean_loss:.4f}")
    return rows


# ----------------------------------------------------------------------------- report


def report(info, tests, conv, epoch, data_source, total_s) -> str:
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"## CuPy backend on {info['gpu']} ({stamp})",
        "",
        "- command: `python benchmarks/gpu_check.py`",
        f"- GPU: {info['gpu']}, {info['gpu_memory_gib']} GiB, {info['multiprocessors']} SMs; "
        f"driver {info['driver']}, CUDA runtime {info['cuda_runtime']}",
        f"- CuPy {info['cupy']}, PyTorch {info['torch']}, NumPy {info['numpy']}, "
        f"Python {info['python']}; host: {info['cpu']}",
        f"- tests (streamed log: pytest_gpu.log, junit_gpu.xml): `{tests['command']}` -> "
        f"{tests['summary']} ({tests['seconds']} s)"
        if tests else "- tests: not run",
        f"- epoch data: {data_source}; the whole check took {total_s:.0f} s",
        "",
    ]
    if conv:
        refs = [k[:-8] for k in conv[0] if k.endswith(" fwd+bwd")]
        headers = ["conv2d shape"] + [f"{r} fwd+bwd ms" for r in refs] + [f"{r} fwd ms"
                                                                            for r in refs]
        rows = [[r["shape"]] + [f"{r[f'{x} fwd+bwd']:.3f}" for x in refs]
                + [f"{r[f'{x} fwd']:.3f}" for x in refs] for r in conv]
        if "torch fp32" in refs:
            headers.append("tinydl/torch fp32 (fwd+bwd)")
            for row, r in zip(rows, conv):
                row.append(f"{r['tinydl fwd+bwd'] / r['torch fp32 fwd+bwd']:.2f}")
        lines += [common.format_table(headers, rows), ""]
    if epoch:
        ref = next((r for r in epoch if r["framework"] == "torch fp32"), None)
        rows = [[r["framework"], f"{r['epoch_s']:.2f}", f"{r['ms_per_step']:.2f}",
                 f"{r['mean_loss']:.4f}",
                 f"{r['epoch_s'] / ref['epoch_s']:.2f}" if ref else "-"] for r in epoch]
        headers = ["MnistCNN epoch (469 steps, batch 128, Adam)", "s/epoch", "ms/step",
                   "mean loss", "time / torch fp32"]
        lines += [common.format_table(headers, rows), ""]
    lines += [
        "- goals (issue 16): every test passes on cuda; epoch <= 1.5x and conv2d fwd+bwd <= 2.0x "
        "PyTorch fp32.",
        "- torch fp32: TF32 off (float32 like tinydl); torch tf32: PyTorch's default TF32 "
        "convolutions. Medians of the timed calls, each closed by a CUDA synchronisation.",
        "",
    ]
    return "\n".join(lines)


def dry_run(data_source: str) -> int:
    """The benchmark code on the CPU with few repeats: proves the script, measures nothing."""
    try:
        import torch  # noqa: F401

        torch_ok = True
    except ImportError:
        torch_ok = False
    conv = bench_conv(2, 1, torch_ok, device="cpu")
    x, y, data_source = load_mnist()
    epoch = bench_epoch(x[:1024], y[:1024], 2, torch_ok, device="cpu", steps=3)
    info = {k: "-" for k in ("gpu", "gpu_memory_gib", "multiprocessors", "driver",
                             "cuda_runtime", "cupy", "torch", "numpy", "python", "cpu")}
    log(report(info, None, conv, epoch, data_source + " (CPU dry run)", 0.0))
    return 0


def write(out: Path | None, results: dict, data_source: str, start: float) -> str:
    text = report(results["machine"], results["tests"], results["conv2d"], results["epoch"],
                  data_source, time.perf_counter() - start)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.md").write_text(text)
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-timeout", type=int, default=270,
                        help="seconds allowed for the tests (default %(default)s)")
    parser.add_argument("--workers", type=int, default=8,
                        help="pytest-xdist workers when xdist is installed (default %(default)s)")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--steps", type=int, default=30, help="timed conv2d calls per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed conv2d calls first")
    parser.add_argument("--warmup-steps", type=int, default=30,
                        help="untimed training steps before the timed epoch")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check this script on the CPU: a few conv calls and steps, no tests")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data_source = stage_mnist()
    log(f"data: {data_source}")

    import tinydl as td

    if args.dry_run_cpu:
        return dry_run(data_source)
    if not td.cuda.is_available():
        log(f"gpu_check: no CUDA GPU here, nothing measured: {td.cuda.why_unavailable()}")
        return 0
    cp = td.Device("cuda").xp
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    info = machine(cp)
    log("\n".join(f"{k}: {v}" for k, v in info.items()))
    torch_ok = bool(info["torch_sees_gpu"])

    # NOTE: benchmarks first, tests last: a run stopped by the device's time limit keeps the
    # tables, and the streamed test log shows how far the tests got. Each stage is written to
    # $OUT as soon as it ends, and a crash in one stage is recorded without losing the others.
    results = {"machine": info, "tests": None, "conv2d": [], "epoch": []}

    def stage(name, fn):
        log(f"\n== {name}")
        try:
            results[name] = fn()
        except Exception:  # noqa: BLE001 - recorded and shown; the next stage still runs
            results[f"{name}_error"] = traceback.format_exc()
            log(results[f"{name}_error"])
        write(out, results, data_source, start)

    if not args.skip_bench:
        stage("conv2d", lambda: bench_conv(args.steps, args.warmup, torch_ok))
        x, y, data_source = load_mnist()
        stage("epoch", lambda: bench_epoch(x, y, args.warmup_steps, torch_ok))
    if not args.skip_tests:
        stage("tests", lambda: run_tests(args.test_timeout, out, log, args.workers))
    log("\n" + write(out, results, data_source, start))
    tests = results["tests"]
    return 1 if tests and tests["exit"] != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
