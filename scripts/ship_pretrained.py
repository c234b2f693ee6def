"""Turn a run of ``tinydl train`` into the pretrained weights shipped in the package.

    python scripts/ship_pretrained.py RUN NAME --command "tinydl train ..." [--float16]

writes ``tinydl/layers/pretrained/<stem>.safetensors`` (the model's state dict only, from
``RUN/best.safetensors``) and ``<stem>.json`` (the record ``tinydl.layers.pretrained`` reads): the
run's metadata as ``load_run`` returns it, the architecture arguments, the exact command, seed,
training date and time, tinydl version and commit, and the test accuracy recomputed here, with
the shipped (possibly float16-rounded) weights, on the MNIST test set ($TINYDL_DATA).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import tinydl as td
from tinydl.data import MNIST, ArrayDataset, DataLoader
from tinydl.layers.pretrained import HERE, PRETRAINED
from tinydl.recipes.classifier import build_model, evaluate, normalize

# arguments that do not change the weights' shapes (free to differ under pretrained=True)
FREE = {"dropout", "pretrained"}


def test_accuracy(model, meta) -> tuple[float, float]:
    test = MNIST(train=False)
    loader = DataLoader(
        ArrayDataset(test.data, test.targets, transform=normalize(meta["mean"], meta["std"])), 1000
    )
    result = evaluate(model.eval(), loader)
    return result["accuracy"], result["loss"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("name", choices=sorted(PRETRAINED))
    p.add_argument("--command", required=True, help="the exact tinydl train command of the run")
    p.add_argument("--float16", action="store_true", help="store the weights as float16")
    p.add_argument("--commit", default=None, help="the commit the run was trained at (HEAD)")
    args = p.parse_args(argv)

    ckpt_path = args.run / "best.safetensors"
    ckpt = td.io.load_checkpoint(ckpt_path)
    meta, state = ckpt["meta"], ckpt["model_state"]
    if meta["model"] != args.name:
        sys.exit(f"the run trained {meta['model']!r}, not {args.name!r}")
    dtype = np.float16 if args.float16 else np.float32
    # NOTE: float16 only rounds the stored values; they load back into float32 parameters
    state = {
        k: v.astype(dtype) if getattr(v, "dtype", None) == np.float32 else v
        for k, v in state.items()
    }
    model = build_model(meta["model"], **meta["model_kwargs"])
    model.load_state_dict(state)
    accuracy, loss = test_accuracy(model, meta)

    stem = PRETRAINED[args.name]
    weights = HERE / f"{stem}.safetensors"
    td.save(state, weights)
    params = inspect.signature(type(model)).parameters
    architecture = {k: v.default for k, v in params.items() if k not in FREE}
    architecture.update({k: v for k, v in meta["model_kwargs"].items() if k not in FREE})
    history = ckpt["metrics"]["history"]
    trained = datetime.datetime.fromtimestamp(ckpt_path.stat().st_mtime, datetime.timezone.utc)
    commit = (
        args.commit
        or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    )
    record = {
        **meta,
        "pretrained": args.name,
        "architecture": architecture,
        "file": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "dtype": np.dtype(dtype).name,
        "test_accuracy": accuracy,
        "test_loss": loss,
        "test_images": 10000,
        "command": args.command,
        "seed": meta["config"]["seed"],
        "date": trained.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tinydl_version": td.__version__,
        "commit": commit.strip(),
        "epoch_seconds": round(sum(h["seconds"] for h in history), 1),
        "val_accuracy": max(h.get("val_accuracy", 0.0) for h in history),
    }
    (HERE / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {weights} ({weights.stat().st_size} bytes, {record['dtype']}): test accuracy {accuracy:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
