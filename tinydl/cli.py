"""The command line: ``tinydl train | evaluate | predict | info`` (also ``python -m tinydl``).

Bad arguments and missing files print one line and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tinydl", description="Train, evaluate and deploy digit classifiers.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on MNIST")
    t.add_argument("--model", choices=["mlp", "lenet", "cnn", "resnet"], default="cnn")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default per optimizer)"
    )
    t.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    t.add_argument("--augment", action="store_true", help="random rotations and shifts")
    t.add_argument("--data", default=None, help="folder with the MNIST files (else $TINYDL_DATA)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/latest", help="run folder (checkpoints, metrics, plots)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    t.add_argument("--val-size", type=int, default=5000)

    e = sub.add_parser("evaluate", help="test accuracy, report and confusion matrix of a run")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("--data", default=None)
    e.add_argument("--json", action="store_true")

    r = sub.add_parser("predict", help="classify new digit images of any size and format")
    r.add_argument("run", help="run folder or checkpoint file")
    r.add_argument("images", nargs="+")
    r.add_argument("--json", action="store_true")

    sub.add_parser("info", help="versions and what tinydl will use")

    b = sub.add_parser("bench", help="run a benchmark (python -m benchmarks; from a clone)")
    b.add_argument("bench_args", nargs=argparse.REMAINDER, help="benchmark name and options")
    return p


def _train(args) -> int:
    from .training import TrainConfig, run_training

    for name in ("epochs", "batch_size", "val_size"):
        if getattr(args, name) < (0 if name == "val_size" else 1):
            raise ValueError(
                f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
            )
    lr = (
        args.lr
        if args.lr is not None
        else {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3}[args.optimizer]
    )
    cfg = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        optimizer=args.optimizer,
        augment=args.augment,
        data=args.data,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        limit=args.limit,
        val_size=args.val_size,
    )
    result = run_training(cfg)
    print(f"saved the best checkpoint, metrics.json and plots in {cfg.out}")
    return 0 if result else 1


def _evaluate(args) -> int:
    from . import metrics
    from .data import ArrayDataset, DataLoader
    from .training import evaluate, load_digits, load_run, normalize

    model, meta = load_run(args.run)
    data = args.data or meta["config"].get("data")
    _, (images, labels), source = load_digits(data, log=lambda m: print(m, file=sys.stderr))
    result = evaluate(model, DataLoader(ArrayDataset(images, labels, transform=normalize()), 1000))
    target, pred = result["target"], result["pred"]
    if args.json:
        report = metrics.classification_report(target, pred, num_classes=10, output_dict=True)
        print(
            json.dumps(
                {
                    "test_accuracy": result["accuracy"],
                    "test_loss": result["loss"],
                    "data": source,
                    "images": len(target),
                    "report": report,
                    "confusion_matrix": metrics.confusion_matrix(target, pred, 10).tolist(),
                }
            )
        )
        return 0
    print(f"test accuracy on {len(target)} {source} images: {result['accuracy']:.4f}\n")
    print(metrics.classification_report(target, pred, num_classes=10))
    print("confusion matrix (rows: true, columns: predicted)")
    print(metrics.confusion_matrix(target, pred, 10))
    return 0


def _predict(args) -> int:
    from .data.folder import load_image
    from .digits import predict_digits
    from .training import load_run

    model, meta = load_run(args.run)
    images = []
    for path in args.images:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no image file at {path}")
        images.append(load_image(path, mode="L"))
    results = predict_digits(model, images, meta["mean"], meta["std"], k=3)
    if args.json:
        print(
            json.dumps(
                [
                    {"image": p, "top3": [{"class": c, "probability": q} for c, q in r]}
                    for p, r in zip(args.images, results)
                ]
            )
        )
        return 0
    for path, top in zip(args.images, results):
        print(f"{path}: " + ", ".join(f"{c} ({q:.1%})" for c, q in top))
    return 0


def _info(args) -> int:
    from .sysinfo import format_info

    print(format_info())
    return 0


def _bench(args) -> int:
    try:
        from benchmarks.__main__ import main as bench_main
    except ImportError:
        raise ImportError(
            "the benchmarks live in the repository, not in the installed package: run this "
            "from the root of a tinydl clone (where the benchmarks/ folder is)"
        ) from None
    return bench_main(args.bench_args)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    command = {
        "train": _train,
        "evaluate": _evaluate,
        "predict": _predict,
        "info": _info,
        "bench": _bench,
    }
    from .errors import TinydlError

    try:
        return command[args.command](args)
    except KeyboardInterrupt:
        print("tinydl: interrupted", file=sys.stderr)
        return 130
    except (TinydlError, OSError, ValueError, ImportError) as exc:
        message = (
            "; ".join(line.strip() for line in str(exc).strip().splitlines()) or type(exc).__name__
        )
        print(f"tinydl {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
