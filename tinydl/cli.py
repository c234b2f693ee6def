"""The command line: ``tinydl train | evaluate | predict | export | serve | info | bench``
(``python -m tinydl``).

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
    p = _Parser(
        prog="tinydl",
        description="Train, evaluate and deploy image classifiers (MNIST digits by default).",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on MNIST, Fashion-MNIST or an image folder")
    t.add_argument(
        "--dataset",
        default="mnist",
        help="mnist, fashion-mnist, or a folder with train/ and test/ holding one sub-folder of "
        "images per class (read as grayscale, resized to 28x28; default: mnist)",
    )
    t.add_argument("--model", choices=["mlp", "lenet", "cnn", "resnet", "vgg"], default="cnn")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default per optimizer)"
    )
    t.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    t.add_argument("--augment", action="store_true", help="random rotations and shifts")
    t.add_argument(
        "--data", default=None, help="folder with the (Fashion-)MNIST files (else $TINYDL_DATA)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/latest", help="run folder (checkpoints, metrics, plots)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    t.add_argument("--val-size", type=int, default=5000)
    t.add_argument(
        "--distributed",
        action="store_true",
        help="one rank of a data-parallel MPI job: mpiexec -n N python -m mpi4py -m tinydl train "
        "--distributed ... (--batch-size is the global batch, split across the ranks)",
    )
    t.add_argument(
        "--sync-bn", action="store_true", help="batch norm with the global batch's statistics"
    )
    t.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=None,
        help="profile N training steps after one warm-up step, print the table and stop "
        "(nothing is written)",
    )

    e = sub.add_parser("evaluate", help="test accuracy, report and confusion matrix of a run")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument(
        "--dataset", default=None, help="test split of this dataset (default: the run's)"
    )
    e.add_argument("--data", default=None, help="folder with the (Fashion-)MNIST files")
    e.add_argument("--json", action="store_true")

    r = sub.add_parser("predict", help="classify new images of any size and format")
    r.add_argument("run", nargs="?", help="run folder or checkpoint file (or --pretrained)")
    r.add_argument(
        "images",
        nargs="*",
        help="image files, folders (walked recursively; a folder of class sub-folders named as "
        "the run's classes is scored) or globs",
    )
    r.add_argument("--json", action="store_true")
    r.add_argument("--csv", default=None, help="also write path, class, probability, top-3 here")
    r.add_argument("--batch-size", type=int, default=256)
    _pretrained_option(r)

    x = sub.add_parser("export", help="the trained model for use without tinydl (ONNX, NumPy)")
    x.add_argument("run", nargs="?", help="run folder or checkpoint file (or --pretrained)")
    _pretrained_option(x)
    x.add_argument(
        "--onnx", metavar="FILE", help="write an ONNX model (input 'input', output 'logits')"
    )
    x.add_argument(
        "--numpy", metavar="DIR", help="write DIR/predict.py and DIR/weights.npz (NumPy + Pillow)"
    )

    s = sub.add_parser("serve", help="serve a run over HTTP, with a page to draw digits on")
    s.add_argument("run", nargs="?", help="run folder or checkpoint file (or --pretrained)")
    _pretrained_option(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    s.add_argument("--port", type=int, default=8000)

    sub.add_parser("info", help="versions and what tinydl will use")

    b = sub.add_parser("bench", help="run a benchmark (python -m benchmarks; from a clone)")
    b.add_argument("bench_args", nargs=argparse.REMAINDER, help="benchmark name and options")
    return p


def _pretrained_option(p) -> None:
    from .layers.pretrained import PRETRAINED

    p.add_argument(
        "--pretrained",
        choices=list(PRETRAINED),
        help="use the MNIST weights shipped with tinydl instead of a RUN",
    )


def _model_of(args, positional: list[str]) -> tuple:
    """``(model, meta, rest)``: the model of ``--pretrained`` or of the RUN that leads the
    ``positional`` arguments (exactly one of the two), and the positionals after it."""
    from .recipes.classifier import load_pretrained, load_run

    if args.pretrained is None:
        if not positional:
            raise ValueError("name a RUN folder or checkpoint, or use --pretrained lenet|cnn")
        return (*load_run(positional[0]), positional[1:])
    first = Path(positional[0]) if positional else None
    if first and (first.suffix == ".safetensors" or (first / "best.safetensors").is_file()):
        raise ValueError(f"give a RUN ({first}) or --pretrained, not both")
    return (*load_pretrained(args.pretrained), positional)


def _train(args) -> int:
    from .recipes.classifier import TrainConfig, run_training

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
    # NOTE: an image folder is stored by its absolute path, so that `tinydl evaluate` finds it
    # from any working directory
    named = args.dataset in ("mnist", "fashion-mnist")
    cfg = TrainConfig(
        model=args.model,
        dataset=args.dataset if named else str(Path(args.dataset).resolve()),
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
        distributed=args.distributed,
        sync_bn=args.sync_bn,
    )
    if args.profile is not None:
        return _profile(cfg, args.profile)
    if args.distributed:
        return _train_distributed(cfg)
    result = run_training(cfg)
    print(f"saved the best checkpoint, metrics.json and plots in {cfg.out}")
    return 0 if result else 1


def _train_distributed(cfg) -> int:
    from . import distributed as dist
    from .recipes.classifier import run_training

    dist.init()
    threads = dist.set_threads_per_rank()
    world = dist.get_world_size()
    dist.print0(
        f"distributed: {world} ranks, {cfg.batch_size // world} images per rank of each "
        f"{cfg.batch_size}-image batch, {threads} thread(s) per rank"
    )
    result = dist.abort_on_error(run_training)(cfg, log=dist.print0)
    dist.print0(f"saved the best checkpoint, metrics.json and plots in {cfg.out}")
    return 0 if result else 1


def _profile(cfg, steps: int) -> int:
    from .recipes.profiling import profile_training

    prof = profile_training(cfg, steps)
    print(
        f"\nprofile of {steps} training steps of {cfg.model} (batch {cfg.batch_size}, "
        f"{cfg.optimizer}), after one warm-up step that is not counted (it compiles the Numba "
        f"kernels); {prof.wall_s / steps * 1e3:.1f} ms per step. Nothing was written.\n"
    )
    print(prof.table())
    return 0


def _confusion_table(matrix, names) -> str:
    """The confusion matrix with class names on its rows and columns."""
    width = max(len(str(matrix.max())), *(len(n) for n in names))
    lines = [" " * width + " " + " ".join(f"{n:>{width}}" for n in names)]
    lines += [
        f"{n:>{width}} " + " ".join(f"{v:>{width}}" for v in row) for n, row in zip(names, matrix)
    ]
    return "\n".join(lines)


def _print_scores(target, pred, classes, header: str) -> None:
    from . import metrics

    print(f"{header}: {metrics.accuracy(pred, target):.4f}\n")
    print(metrics.classification_report(target, pred, classes, num_classes=len(classes)))
    print("confusion matrix (rows: true, columns: predicted)")
    print(_confusion_table(metrics.confusion_matrix(target, pred, len(classes)), classes))


def _evaluate(args) -> int:
    from .recipes.classifier import evaluate_run, report

    test, classes, source = evaluate_run(
        args.run, args.dataset, args.data, log=lambda m: print(m, file=sys.stderr)
    )
    target, pred = test["target"], test["pred"]
    if args.json:
        print(json.dumps({"data": source, "images": len(target), **report(test, classes)}))
        return 0
    _print_scores(target, pred, classes, f"test accuracy ({source}, {len(target)} images)")
    return 0


def _write_csv(path, images, results, labels, classes) -> None:
    import csv
    import io

    from .io.atomic import atomic_write

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    scored = any(t is not None for t in labels)
    writer.writerow(["path", "class", "probability", "top3"] + (["true"] if scored else []))
    for image, top, t in zip(images, results, labels):
        top3 = ";".join(f"{name}:{q:.6f}" for _, name, q in top)
        true = [classes[t] if t is not None else ""] if scored else []
        writer.writerow([image, top[0][1], f"{top[0][2]:.6f}", top3, *true])
    atomic_write(path, text.getvalue(), fn="predict --csv")


def _predict(args) -> int:
    from .recipes.classifier import class_names, predict_files
    from .recipes.inputs import find_images

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    positional = [*([args.run] if args.run else []), *args.images]
    if len(positional) < (1 if args.pretrained else 2):
        raise ValueError(
            "name a RUN folder or checkpoint and the images to classify (files, folders or "
            "globs), or --pretrained lenet|cnn and the images"
        )
    model, meta, inputs = _model_of(args, positional)
    classes = class_names(meta)
    images, labels = find_images(inputs, classes)
    results = predict_files((model, meta), images, k=3, batch_size=args.batch_size)
    if args.csv:
        _write_csv(args.csv, images, results, labels, classes)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "image": p,
                        "top3": [{"class": c, "name": name, "probability": q} for c, name, q in r],
                    }
                    for p, r in zip(images, results)
                ]
            )
        )
        return 0
    for path, top in zip(images, results):
        print(f"{path}: " + ", ".join(f"{name} ({q:.1%})" for _, name, q in top))
    scored = [(t, top[0][0]) for t, top in zip(labels, results) if t is not None]
    if scored:
        import numpy as np

        target, pred = (np.array(v) for v in zip(*scored))
        print()
        _print_scores(target, pred, classes, f"accuracy (image folder, {len(scored)} images)")
    return 0


def _export(args) -> int:
    if not args.onnx and args.numpy is None:
        raise ValueError("name what to write: --onnx model.onnx and/or --numpy DIR")
    model, meta, rest = _model_of(args, [args.run] if args.run else [])
    if rest:
        raise ValueError(f"give a RUN ({rest[0]}) or --pretrained, not both")
    if args.onnx:
        import numpy as np

        from . import onnx

        # NOTE: every run's images are prepared to one 28x28 grayscale channel
        onnx.export(model, np.zeros((1, 1, 28, 28), np.float32), args.onnx)
        print(f"wrote {args.onnx}")
    if args.numpy is not None:
        from .export_numpy import export_numpy

        script = export_numpy((model, meta), args.numpy)
        print(f"wrote {script} and {script.with_name('weights.npz')}; run: python {script} IMAGE...")
    return 0


def _serve(args) -> int:
    from .serve import serve

    model, meta, rest = _model_of(args, [args.run] if args.run else [])
    if rest:
        raise ValueError(f"serve takes one RUN or --pretrained, got also {rest}")
    return serve((model, meta), host=args.host, port=args.port)


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
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # NOTE: argparse leaves unparsed the positionals that follow an option (`predict RUN --json
    # a.png`, `predict RUN --pretrained lenet a.png`): for predict they are more inputs
    if extra and (args.command != "predict" or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.images += extra
    command = {
        "train": _train,
        "evaluate": _evaluate,
        "predict": _predict,
        "export": _export,
        "serve": _serve,
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
