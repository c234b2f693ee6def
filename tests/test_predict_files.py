"""``tinydl predict`` on folders, globs and large or hostile images, as a user runs it.

The run is made here in a blink: an untrained MLP saved as ``tinydl train`` saves its best
checkpoint, so no dataset is needed; what is checked is the plumbing, not the accuracy."""

import csv
import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from tests.test_cli import tinydl
from tinydl.errors import ImageTooLargeError
from tinydl.io import save_checkpoint
from tinydl.layers import MLP

pil = pytest.importorskip("PIL.Image", reason="reading images needs Pillow (the data extra)")

from tinydl.data.folder import load_image, read_gray  # noqa: E402

CLASSES = ["bar", "blob", "ring"]


def _run(folder, preprocess: str):
    model = MLP(hidden=(16,), num_classes=3)
    meta = {"model": "mlp", "model_kwargs": {"hidden": [16], "num_classes": 3}, "mean": 0.13,
            "std": 0.31, "classes": CLASSES, "preprocess": preprocess}  # fmt: skip
    save_checkpoint(folder / "best.safetensors", model.state_dict(), meta=meta)
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("run"), "digit")


@pytest.fixture(scope="module")
def resize_run(tmp_path_factory):
    """A run of an image folder: new images are resized to 28x28, not fitted as digits."""
    return _run(tmp_path_factory.mktemp("resize-run"), "resize")


def _digit(cls: int, size: int = 60) -> np.ndarray:
    """A dark shape on white, as a scan: a bar, a blob or a ring by class."""
    img = np.full((size, size), 255, np.uint8)
    y, x = np.mgrid[:size, :size] - size / 2
    r = np.hypot(y, x)
    shape = [np.abs(x) < size / 10, r < size / 4, (r < size / 3) & (r > size / 5)][cls]
    img[shape & (np.abs(y) < size / 3)] = 0
    return img


def _png_header_only(path, width, height, mode=0):
    """A PNG that declares ``width x height`` (colour type ``mode``) but holds one row: Pillow
    reads the size from the header, so a bomb is refused without ever making one."""
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width * (3 if mode == 2 else 1) + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """``root/<class>/...`` with a nested folder, a non-image file and a JPEG."""
    root = tmp_path_factory.mktemp("shapes")
    for c, name in enumerate(CLASSES):
        (root / name / "more").mkdir(parents=True)
        for i in range(2):
            pil.fromarray(_digit(c, 50 + 10 * i)).save(root / name / f"{i}.png")
        pil.fromarray(_digit(c)).convert("RGB").save(root / name / "more" / "x.jpg")
        (root / name / "notes.txt").write_text("not an image")
    return root


def test_read_gray_takes_a_path_bytes_or_a_file(tmp_path):
    path = tmp_path / "d.png"
    pil.fromarray(_digit(1)).save(path)
    img = read_gray(path)
    assert img.dtype == np.float32 and img.shape == (60, 60) and 0 <= img.min() <= img.max() <= 1
    assert np.array_equal(read_gray(path.read_bytes()), img)
    with open(path, "rb") as f:
        assert np.array_equal(read_gray(f), img)
    assert np.array_equal(img, np.asarray(pil.open(path), np.float32) / 255)


def test_large_jpeg_is_decoded_reduced(tmp_path):
    path = tmp_path / "scan.jpg"
    pil.fromarray(np.kron(_digit(0), np.ones((50, 50), np.uint8))).save(path)  # 3000x3000
    assert max(read_gray(path).shape) <= 1024
    assert max(read_gray(path, max_side=100).shape) <= 100
    assert load_image(path, "L", (28, 28)).shape == (28, 28)


@pytest.mark.parametrize(
    "size, mode, pixels",
    [((30000, 30000), 0, "900,000,000"), ((13000, 13000), 2, "169,000,000")],
    ids=["over-pillow-limit", "rgb-over-byte-limit"],
)
def test_bomb_is_refused_with_one_line(tmp_path, run_dir, resize_run, size, mode, pixels):
    path = _png_header_only(tmp_path / "bomb.png", *size, mode)
    with pytest.raises(ImageTooLargeError, match=f"bomb.png: .*{pixels} pixels"):
        read_gray(path)
    for run in (run_dir, resize_run):
        r = tinydl("predict", run, path)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()]
        assert str(path) in r.stderr and f"{pixels} pixels" in r.stderr


MEASURE = """
import resource, sys
from tinydl.recipes.classifier import load_run, predict_files
run = load_run(sys.argv[1])
predict_files(run, [sys.argv[3]])  # the first forward pass imports and compiles: not counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
top = predict_files(run, [sys.argv[2]])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, top[0][0][1])
"""


def test_large_image_is_predicted_within_memory(tmp_path, run_dir):
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    pil.fromarray(np.kron(_digit(2), np.ones((150, 150), np.uint8))).save(big)  # 9000x9000
    pil.fromarray(_digit(2)).save(small)
    r = subprocess.run([sys.executable, "-c", MEASURE, str(run_dir), str(big), str(small)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    delta_mb, name = r.stdout.split()
    # NOTE: loose on purpose: decoding holds the 81 MB of 8-bit pixels; the old float64 path
    # took 2 GB
    assert float(delta_mb) < 300 and name in CLASSES


def test_folder_walk_csv_and_image_folder_scores(tmp_path, run_dir, image_tree):
    out = tmp_path / "pred.csv"
    r = tinydl("predict", run_dir, image_tree, "--csv", out)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 9 and not any(row["path"].endswith(".txt") for row in rows)
    assert sorted(rows[0]) == ["class", "path", "probability", "top3", "true"]
    for row in rows:
        top3 = [part.split(":") for part in row["top3"].split(";")]
        assert [n for n, _ in top3][0] == row["class"] and sorted(n for n, _ in top3) == CLASSES
        assert float(top3[0][1]) == pytest.approx(float(row["probability"]))
        assert row["true"] == row["path"].split("/")[-2 if "more" not in row["path"] else -3]
    right = sum(row["class"] == row["true"] for row in rows)
    assert f"accuracy (image folder, 9 images): {right / 9:.4f}" in r.stdout
    table = r.stdout.split("confusion matrix (rows: true, columns: predicted)\n")[1].splitlines()
    assert table[0].split() == CLASSES
    assert sum(int(v) for line in table[1:] for v in line.split()[1:]) == 9
    assert "precision" in r.stdout


def test_globs_and_json_keep_their_shape(run_dir, image_tree):
    r = tinydl("predict", run_dir, f"{image_tree}/*/*.png", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [o["image"] for o in got] == sorted(str(p) for p in image_tree.glob("*/*.png"))
    assert all(len(o["top3"]) == 3 for o in got)
    # a folder that is not laid out by class: predictions, no scores
    r = tinydl("predict", run_dir, image_tree / "bar")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3 and "accuracy" not in r.stdout


def test_empty_folder_or_glob_is_named(tmp_path, run_dir):
    r = tinydl("predict", run_dir, tmp_path)
    assert r.returncode == 1 and "no images" in r.stderr and "Traceback" not in r.stderr
    r = tinydl("predict", run_dir, tmp_path / "*.png")
    assert r.returncode == 1 and "no image file at" in r.stderr
