"""Every convolution of a model zoo network, one at a time, tinydl beside PyTorch CPU: where a
training step's conv time goes and which layers lose.

The layers are found by running the model once on a batch of MNIST's shape with a forward hook
on each ``Conv2d`` (so the list follows the model's definition). One call times
``F.conv2d`` forward alone (``fwd``, no graph) or forward + backward of a fixed upstream
gradient into the input (except for the first layer, whose input is the image) and the weight
(``fwd+bwd``). Each framework runs in its own process, alternated round by round. The ``path``
column says which tinydl convolution runs the layer (Winograd F(2x2) or F(4x4), per-image
columns or im2col).
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

DESCRIPTION = "each conv layer of a model, forward and forward+backward, tinydl vs PyTorch"
MODELS = ("cnn", "resnet", "lenet", "vgg")


def model_layers(name: str, batch: int) -> list[dict]:
    """The distinct conv layers of model ``name`` with their input shapes at ``batch``, in the
    order they run, each with ``count`` (how often the model runs it per step)."""
    import tinydl as td
    from tinydl.layers import MODELS as ZOO
    from tinydl.layers import Conv2d

    model, seen = ZOO[name](), {}

    def hook(module, args, output):
        x = args[0]
        key = (tuple(x.shape[1:]), module.out_channels, module.kernel_size, module.stride,
               module.padding, module.bias is not None)  # fmt: skip
        seen.setdefault(key, {"count": 0, "first": not seen})["count"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Conv2d)]
    with td.no_grad():
        model.eval()(td.zeros((1, 1, 28, 28)))
    for h in handles:
        h.remove()
    return [
        {"in": [batch, *k[0]], "cout": k[1], "kernel": list(k[2]), "stride": list(k[3]),
         "padding": list(k[4]), "bias": k[5], **v}  # fmt: skip
        for k, v in seen.items()
    ]


def label(layer: dict) -> str:
    n, c, h, w = layer["in"]
    (kh, _), (s, _), (p, _) = layer["kernel"], layer["stride"], layer["padding"]
    return f"{c}->{layer['cout']} at {h}x{w}, k{kh} s{s} p{p}"


def _output_size(layer: dict) -> tuple[int, int]:
    from tinydl.backend.kernels.numpy_ref import conv_output_size

    return tuple(conv_output_size(*a) for a in zip(layer["in"][2:], layer["kernel"],
                                                   layer["stride"], layer["padding"]))  # fmt: skip


def tinydl_path(layer: dict) -> str:
    """Which of tinydl's CPU convolutions runs ``layer`` (with the Numba kernels)."""
    from tinydl.functional import conv_winograd
    from tinydl.functional._conv_images import image_kernels

    x = np.zeros(layer["in"], np.float32)
    w = np.zeros((layer["cout"], x.shape[1], *layer["kernel"]), np.float32)
    args = (tuple(layer["stride"]), tuple(layer["padding"]), (1, 1), 1)
    tile = conv_winograd.use_winograd(x, w, *args)
    if tile:
        return f"winograd F({tile}x{tile})"
    return "per-image" if image_kernels(x, 1, int(np.prod(_output_size(layer)))) else "im2col"


def _closures(framework: str, layer: dict):
    if framework == "torch":
        import torch.nn.functional as F
    else:
        import tinydl.functional as F
    rng = np.random.default_rng(0)
    n, cin = layer["in"][:2]
    arrays = [rng.standard_normal(layer["in"], dtype=np.float32),
              rng.standard_normal((layer["cout"], cin, *layer["kernel"]), dtype=np.float32)]  # fmt: skip
    if layer["bias"]:
        arrays.append(rng.standard_normal(layer["cout"], dtype=np.float32))
    g = rng.standard_normal((n, layer["cout"], *_output_size(layer)), dtype=np.float32)
    kw = {"stride": tuple(layer["stride"]), "padding": tuple(layer["padding"])}
    needs = [not layer["first"]] + [True] * (len(arrays) - 1)  # the image needs no gradient
    return common.fwd_bwd_closures(framework, lambda *a: F.conv2d(*a, **kw), arrays, g, needs)


def measure(framework: str, layers: list[dict], args) -> list[list[float]]:
    """``[[fwd ms, fwd+bwd ms], ...]`` of every layer, in this process."""
    if framework == "torch":
        import torch

        common.limit_threads(args.threads, torch)
    else:
        import tinydl  # noqa: F401 - so that limit_threads sets tinydl's threads too

        common.limit_threads(args.threads)
    out = []
    for layer in layers:
        fns = _closures(framework, layer)
        out.append([common.summarize(common.time_calls(f, args.steps, args.warmup))["ms"]
                    for f in fns])  # fmt: skip
    return out


def _run_worker(framework: str, args) -> list:
    cmd = [sys.executable, "-m", "benchmarks.conv_layers", "--worker", framework,
           "--model", args.model, "--batch-size", str(args.batch_size), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = common.thread_env(args.threads)
    env["TINYDL_KERNELS"] = "numba"
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"conv_layers worker {framework} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks conv_layers",
                                     description=DESCRIPTION)  # fmt: skip
    parser.add_argument("--model", default="cnn", choices=MODELS, help="default cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument("--worker", choices=("tinydl", "torch"), help=argparse.SUPPRESS)
    common.add_common_args(parser, steps=10)
    args = parser.parse_args(argv)
    if min(args.steps, args.threads, args.rounds, args.batch_size) < 1 or args.warmup < 0:
        parser.error("--steps, --threads, --rounds and --batch-size must be >= 1, --warmup >= 0")
    layers = model_layers(args.model, args.batch_size)
    if args.worker:
        print(json.dumps(measure(args.worker, layers, args)))
        return 0
    have_torch = importlib.util.find_spec("torch") is not None
    info = common.machine_info(args.threads)
    print("\n".join(common.header_lines(info)), flush=True)
    runs = {"tinydl": [], "torch": []}
    for _ in range(args.rounds):  # NOTE: alternated, so a noisy stretch hits both
        if have_torch:
            runs["torch"].append(_run_worker("torch", args))
        runs["tinydl"].append(_run_worker("tinydl", args))
    med = {fw: np.median(np.array(r), axis=0) for fw, r in runs.items() if r}
    rows, totals = [], np.zeros((2, 2))
    for i, layer in enumerate(layers):
        ours = med["tinydl"][i]
        ref = med["torch"][i] if have_torch else None
        totals[0] += layer["count"] * ours
        if ref is not None:
            totals[1] += layer["count"] * ref
        row = [label(layer), str(layer["count"]), tinydl_path(layer),
               f"{ours[0]:.2f}", f"{ours[1]:.2f}"]  # fmt: skip
        row += [f"{ref[0]:.2f}", f"{ref[1]:.2f}", f"{ours[1] / ref[1]:.2f}x"] if ref is not None \
            else ["-", "-", "-"]  # fmt: skip
        rows.append(row)
        print("  " + " | ".join(row), flush=True)
    rows.append(["all (x count)", "", "", f"{totals[0][0]:.1f}", f"{totals[0][1]:.1f}",
                 *((f"{totals[1][0]:.1f}", f"{totals[1][1]:.1f}",
                    f"{totals[0][1] / totals[1][1]:.2f}x") if have_torch else ("-",) * 3)])  # fmt: skip
    headers = ["layer", "per step", "tinydl path", "tinydl fwd ms", "tinydl fwd+bwd ms",
               "torch fwd ms", "torch fwd+bwd ms", "fwd+bwd tinydl/torch"]  # fmt: skip
    table = common.format_table(headers, rows)
    print("\n" + table)
    notes = [
        f"Model {args.model}, batch {args.batch_size}, float32; the conv layers found by a "
        "forward hook on each Conv2d. fwd: F.conv2d under no_grad; fwd+bwd: forward and "
        "backward of a fixed upstream gradient into the weight, the bias and the input (not "
        "for the first layer).",
        f"ms: each framework in its own process, {args.rounds} alternated rounds; the median "
        f"over rounds of the median of {args.steps} timed calls after {args.warmup} warm-up.",
    ]
    if not have_torch:
        notes.append("PyTorch is not installed: no reference column (pip install torch).")
    if args.write:
        title = f"Conv layers of {args.model} (`conv_layers`)"
        print(f"appended to {common.write_results(title, info, table, notes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
