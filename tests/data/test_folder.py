"""ImageFolder on PNG and JPEG files the test writes with Pillow."""

import numpy as np
import pytest

from tinydl.data import DataLoader, DatasetError, DatasetNotFoundError, ImageFolder
from tinydl.data import transforms as T

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (the data extra)")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    for cls, count in (("cat", 2), ("ant", 3), ("bee", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (6, 5), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / cls / f"{i}.png")
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(root / "bee" / "color.PNG")
    Image.fromarray(rgb, mode="RGB").save(root / "bee" / "photo.jpg", quality=95)
    (root / "bee" / "notes.txt").write_text("not an image")
    return root


def test_classes_sorted_and_samples(folder):
    ds = ImageFolder(folder)
    assert ds.classes == ["ant", "bee", "cat"]
    assert ds.class_to_idx == {"ant": 0, "bee": 1, "cat": 2}
    assert len(ds) == 8
    assert ds.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    image, target = ds[0]
    assert image.shape == (6, 5) and image.dtype == np.uint8 and target == 0
    np.testing.assert_array_equal(image, np.asarray(Image.open(folder / "ant" / "0.png")))


def test_grayscale_and_rgb_handling(folder):
    ds = ImageFolder(folder)
    shapes = {p.name: ds[i][0].shape for i, (p, _) in enumerate(ds.samples)}
    assert shapes["0.png"] == (6, 5) and shapes["color.PNG"] == (6, 5, 3)
    assert shapes["photo.jpg"] == (6, 5, 3)
    gray = ImageFolder(folder, mode="L")
    assert {gray[i][0].shape for i in range(len(gray))} == {(6, 5)}
    rgb = ImageFolder(folder, mode="RGB")
    assert {rgb[i][0].shape for i in range(len(rgb))} == {(6, 5, 3)}


def test_loader_over_a_folder(folder):
    ds = ImageFolder(folder, transform=T.Compose([T.ToTensor(), T.Normalize(0.5, 0.5)]), mode="L")
    x, y = next(iter(DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 1, 6, 5) and x.data.dtype == np.float32
    assert y.data.tolist() == ds.targets.tolist()
    assert -1.0 <= x.data.min() and x.data.max() <= 1.0


def test_mixed_sizes_are_transformed_before_stacking(folder):
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(folder / "ant" / "big.png")
    ds = ImageFolder(folder, transform=T.RandomCrop(4), mode="L")
    (x, y) = ds.get_batch(range(len(ds)))
    assert x.shape == (9, 4, 4)
    with pytest.raises(ValueError, match="differ in shape"):
        ImageFolder(folder, mode="L").get_batch(range(len(ds)))


def test_size_resizes_every_image_so_mixed_sizes_batch(folder):
    Image.fromarray(np.full((30, 12), 200, np.uint8)).save(folder / "ant" / "big.png")
    ds = ImageFolder(folder, mode="L", size=(4, 3))
    x, _ = ds.get_batch(range(len(ds)))
    assert x.shape == (len(ds), 4, 3) and x.dtype == np.uint8
    big = [p.name for p, _ in ds.samples].index("big.png")
    assert ds[big][0].shape == (4, 3) and (x[big] == 200).all()  # a flat image stays flat
    with pytest.raises(ValueError, match="size"):
        ImageFolder(folder, size=(0, 3))


def test_errors(tmp_path, folder):
    with pytest.raises(DatasetNotFoundError):
        ImageFolder(tmp_path / "absent")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="mode"):
        ImageFolder(folder, mode="CMYK")
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = ImageFolder(folder)
    index = [p.name for p, _ in ds.samples].index("broken.png")
    with pytest.raises(DatasetError, match="broken.png"):
        ds[index]
