"""Is the data pipeline ever the bottleneck? Batch time of the ``DataLoader`` beside step times.

Measures tinydl's ``DataLoader`` over MNIST (``ArrayDataset``, batches of 128, shuffled, no
prefetch thread, so the whole cost lands in the timing) with the transforms ``tinydl train``
uses: ToTensor+Normalize, and RandomAffine(8 degrees, 10% shift) before them (``--augment``).
Beside them, PyTorch references (a torch ``DataLoader`` over a per-item dataset, as torchvision
builds MNIST, and a batched ``affine_grid``/``grid_sample``), and the time of one tinydl training
step of each model, so each pipeline's cost reads as a share of a step. Below them, each batched
transform alone (``transform.batch`` on a batch of images, no ``DataLoader``), so a slow row of
the pipeline can be traced to the transform that costs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import numpy as np

from . import common
from .epoch import MNIST_MEAN, MNIST_STD, MODEL_NAMES, load_batches, make_step

DESCRIPTION = "DataLoader batch time (normalize / RandomAffine) beside each model's step time"
DEGREES, SHIFT = 8.0, 0.1  # what tinydl train --augment uses


def _mnist_images():
    from tinydl.data import MNIST, DatasetNotFoundError

    try:
        m = MNIST(train=True)
        return m.data, m.targets, f"MNIST ({m.root})"
    except DatasetNotFoundError:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(60000, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=60000)
        return images, labels, "random data of MNIST's shape (MNIST not found: set $TINYDL_DATA)"


def tinydl_loaders(images, labels, batch_size: int) -> dict:
    """The two pipelines of ``tinydl train``: plain and augmented."""
    import tinydl as td
    from tinydl.data import ArrayDataset, DataLoader
    from tinydl.data import transforms as T

    td.manual_seed(0)
    norm = T.Compose([T.ToTensor(), T.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    aug = T.Compose([T.RandomAffine(DEGREES, (SHIFT, SHIFT)), norm])
    gen = np.random.default_rng(0)
    return {
        "tinydl ToTensor+Normalize": DataLoader(
            ArrayDataset(images, labels, transform=norm), batch_size, shuffle=True, generator=gen
        ),
        "tinydl RandomAffine+ToTensor+Normalize": DataLoader(
            ArrayDataset(images, labels, transform=aug), batch_size, shuffle=True, generator=gen
        ),
    }


def transform_pipelines() -> dict:
    """Each batched transform of ``tinydl.data.transforms`` that MNIST training may use."""
    from tinydl.data import transforms as T

    return {
        "ToTensor+Normalize": T.Compose([T.ToTensor(), T.Normalize((MNIST_MEAN,), (MNIST_STD,))]),
        "RandomShift(2)": T.RandomShift(2, generator=0),
        "RandomCrop(28, padding=2)": T.RandomCrop(28, padding=2, generator=0),
        "RandomAffine bilinear": T.RandomAffine(DEGREES, (SHIFT, SHIFT), generator=0),
        "RandomAffine nearest": T.RandomAffine(
            DEGREES, (SHIFT, SHIFT), interpolation="nearest", generator=0
        ),
    }


def time_transforms(images, steps: int, warmup: int) -> dict:
    """Per-batch times of each transform's ``.batch`` on ``images`` (one stacked batch)."""
    return {
        f"tinydl {name} (.batch alone)": common.summarize(
            common.time_calls(lambda tf=tf: tf.batch(images), steps, warmup)
        )
        for name, tf in transform_pipelines().items()
    }


def torch_loaders(images, labels, batch_size: int) -> dict:
    """PyTorch references: a per-item dataset, and a batched affine warp."""
    from .torch_models import torch

    tf = torch.nn.functional
    data, targets = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    class PerItem(torch.utils.data.Dataset):
        def __len__(self):
            return len(targets)

        def __getitem__(self, i):
            x = data[i].to(torch.float32).div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
            return x.unsqueeze(0), targets[i]

    gen = torch.Generator().manual_seed(0)
    per_item = torch.utils.data.DataLoader(PerItem(), batch_size, shuffle=True, generator=gen)

    def batched_affine():
        idx = torch.randperm(len(targets), generator=gen)
        for start in range(0, len(idx), batch_size):
            b = idx[start : start + batch_size]
            x = data[b].to(torch.float32).div_(255).unsqueeze(1)
            n = len(b)
            theta = torch.empty(n).uniform_(-DEGREES, DEGREES, generator=gen).deg2rad_()
            shift = torch.empty(n, 2).uniform_(-2 * SHIFT, 2 * SHIFT, generator=gen)
            cos, sin = theta.cos(), theta.sin()
            mat = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
            grid = tf.affine_grid(torch.cat([mat, shift[:, :, None]], 2), x.shape, False)
            x = tf.grid_sample(x, grid, align_corners=False)
            yield x.sub_(MNIST_MEAN).div_(MNIST_STD), targets[b]

    return {
        "torch DataLoader, per-item normalize": per_item,
        "torch batched affine_grid+grid_sample+normalize": _Reiterable(batched_affine),
    }


class _Reiterable:
    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return self.make()


def time_loader(loader, steps: int, warmup: int) -> dict:
    it = iter(loader)
    return common.summarize(common.time_calls(lambda: next(it), steps, warmup))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks data_pipeline", description=DESCRIPTION
    )
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="models to step")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--model-steps", type=int, default=5, help="timed steps per model (default 5)"
    )
    common.add_common_args(parser, steps=50)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if any(m not in MODEL_NAMES for m in models):
        parser.error(f"--models: choose from {', '.join(MODEL_NAMES)}, got {args.models!r}")
    if args.steps < 1 or args.model_steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps, --model-steps and --threads must be >= 1, --warmup >= 0")
    if (args.steps + args.warmup) * args.batch_size > 60000:
        parser.error("--steps + --warmup batches must fit in one epoch of 60,000 images")

    have_torch = importlib.util.find_spec("torch") is not None
    torch_mod = None
    if have_torch:
        from .torch_models import torch as torch_mod
    info = common.machine_info(args.threads)
    blas = common.limit_threads(args.threads, torch_mod)
    images, labels, source = _mnist_images()
    print(f"data: {source}; batch {args.batch_size}; threads: {blas}")
    print("\n".join(common.header_lines(info)), flush=True)

    loaders = tinydl_loaders(images, labels, args.batch_size)
    if have_torch:
        loaders.update(torch_loaders(images, labels, args.batch_size))
    pipes = {k: time_loader(v, args.steps, args.warmup) for k, v in loaders.items()}
    pipes.update(time_transforms(images[: args.batch_size], args.steps, args.warmup))
    xs, ys, _ = load_batches(args.model_steps + args.warmup, args.batch_size)
    steps = {}
    for name in models:
        step, _, _ = make_step("tinydl", name, xs, ys)
        steps[name] = common.summarize(common.time_calls(step, args.model_steps, args.warmup))

    rows = [
        [name, f"{r['ms']:.2f}", f"{args.batch_size * 1e3 / r['ms']:,.0f}"]
        + [f"{100 * r['ms'] / steps[m]['ms']:.1f}%" for m in models]
        for name, r in pipes.items()
    ]
    rows.append(["tinydl training step (ms)", "", ""] + [f"{steps[m]['ms']:.1f}" for m in models])
    headers = ["pipeline", "ms/batch", "img/s"] + [f"% of {m} step" for m in models]
    table = common.format_table(headers, rows)
    print("\n" + table)
    notes = [
        f"Data: {source}. Batches of {args.batch_size}, shuffled; ms/batch is the median of "
        f"{args.steps} batches after {args.warmup} warm-up batches, loaded in the calling thread "
        "(tinydl prefetch=0, torch num_workers=0), so none of it overlaps a step.",
        "'% of <model> step': the batch time over the median time of one tinydl training step "
        f"of that model (Adam, {args.model_steps} timed steps after {args.warmup} warm-up); "
        "under 100% the pipeline cannot dominate, and with `prefetch=1` (tinydl train's "
        "default) it runs beside the step.",
        "RandomAffine: rotation within ±8°, translation within ±10% (bilinear); the torch row "
        "does the same warp with affine_grid/grid_sample on the batch.",
        "'(.batch alone)' rows: one transform applied to an already stacked batch of uint8 images "
        "(no DataLoader, no indexing, no shuffling): the transform's own share of a pipeline row.",
    ]
    if not have_torch:
        notes.append("PyTorch is not installed: no reference rows (pip install torch).")
    if args.write:
        path = common.write_results(
            "Data pipeline vs training step (`data_pipeline`)", info, table, notes
        )
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
