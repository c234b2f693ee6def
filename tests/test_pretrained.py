"""The pretrained weights shipped in the package: loaded by the constructors, refused with a
changed architecture, used by ``tinydl predict/export --pretrained`` with no dataset and no run,
carried by a wheel, and as accurate on the MNIST test set as their record says."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinydl as td
from tests.test_cli import tinydl
from tinydl.data import MNIST, ArrayDataset, DataLoader, DatasetNotFoundError
from tinydl.io import save_checkpoint
from tinydl.layers import LeNet5, MnistCNN
from tinydl.layers.pretrained import HERE, PRETRAINED, pretrained_meta, pretrained_state
from tinydl.recipes.classifier import evaluate, load_pretrained, load_run, normalize

CLASSES = {"lenet": LeNet5, "cnn": MnistCNN}
ROOT = Path(__file__).resolve().parents[1]


def _eval_logits(model, x):
    with td.no_grad():
        return model.eval()(td.tensor(x)).numpy()


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_constructor_loads_the_shipped_weights(name):
    cls, state = CLASSES[name], pretrained_state(name)
    model, fresh = cls(pretrained=True), cls()
    assert model.training  # as a new module (PyTorch habit); load_pretrained sets eval
    assert list(model.state_dict()) == list(fresh.state_dict()) and set(state) == set(
        fresh.state_dict()
    )
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key])
    x = np.random.default_rng(0).random((4, 1, 28, 28), np.float32)
    assert not np.allclose(_eval_logits(model, x), _eval_logits(fresh, x), atol=1e-3)


@pytest.mark.parametrize(
    "build, arg",
    [
        (lambda: LeNet5(num_classes=5, pretrained=True), "num_classes"),
        (lambda: MnistCNN(width=16, pretrained=True), "width"),
        (lambda: MnistCNN(hidden=64, pretrained=True), "hidden"),
    ],
)
def test_pretrained_with_another_architecture_names_the_argument(build, arg):
    with pytest.raises(ValueError, match=rf"pretrained=True.*not {arg}="):
        build()


def test_dropout_may_differ_and_unknown_names_are_refused():
    a, b = MnistCNN(dropout=0.0, pretrained=True), MnistCNN(pretrained=True)
    x = np.random.default_rng(1).random((2, 1, 28, 28), np.float32)
    np.testing.assert_array_equal(_eval_logits(a, x), _eval_logits(b, x))  # eval: no dropout
    for bad in ("resnet", "mlp", "LeNet5"):
        with pytest.raises(ValueError, match="choose one of lenet, cnn"):
            load_pretrained(bad)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_load_pretrained_has_the_shape_of_load_run(name, tmp_path):
    model, meta = load_pretrained(name)
    assert not model.training and type(model) is CLASSES[name]
    # a run saved from the same model and meta loads back with the same keys and outputs
    run_meta = {k: meta[k] for k in ("model", "model_kwargs", "mean", "std", "classes",
                                     "preprocess", "config", "data")}  # fmt: skip
    save_checkpoint(tmp_path / "best.safetensors", model.state_dict(), meta=run_meta)
    run_model, loaded = load_run(tmp_path)
    assert set(loaded) <= set(meta) and meta["model"] == name
    assert meta["classes"] == [str(i) for i in range(10)] and meta["preprocess"] == "digit"
    x = np.random.default_rng(2).random((3, 1, 28, 28), np.float32)
    np.testing.assert_array_equal(_eval_logits(model, x), _eval_logits(run_model, x))


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_the_record_describes_the_file(name):
    meta, path = pretrained_meta(name), HERE / f"{PRETRAINED[name]}.safetensors"
    assert meta["file"] == path.name and path.stat().st_size < 2_000_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    cmd = meta["command"]
    assert "tinydl train" in cmd and f"--model {name}" in cmd and f"--seed {meta['seed']}" in cmd
    assert meta["seed"] == meta["config"]["seed"] and meta["tinydl_version"] and meta["date"]
    assert {str(v.dtype) for v in pretrained_state(name).values() if hasattr(v, "dtype")} >= {
        meta["dtype"]
    }


def _draw_digits(folder) -> dict:
    """Digits 0, 1, 4 and 7 drawn as dark pen strokes on white paper (no dataset needed)."""
    draw = pytest.importorskip("PIL.ImageDraw", reason="reading images needs Pillow")
    image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")
    strokes = {
        0: [(50, 20), (30, 35), (25, 70), (35, 100), (55, 110), (75, 95), (80, 60), (72, 28),
            (50, 20)],
        1: [(55, 15), (55, 115)],
        4: [(65, 115), (65, 15), (20, 80), (90, 80)],
        7: [(25, 20), (85, 20), (45, 115)],
    }  # fmt: skip
    paths = {}
    for digit, line in strokes.items():
        img = image.new("L", (110, 130), 255)
        draw.Draw(img).line(line, fill=0, width=10, joint="curve")
        paths[digit] = folder / f"drawn{digit}.png"
        img.save(paths[digit])
    return paths


def _no_data_env():
    return {k: v for k, v in os.environ.items() if k != "TINYDL_DATA"}


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_predict_pretrained_without_dataset_or_run(name, tmp_path, monkeypatch):
    paths = _draw_digits(tmp_path)
    monkeypatch.delenv("TINYDL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no run folder anywhere near
    r = tinydl("predict", "--pretrained", name, *paths.values(), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["top3"][0]["class"] for o in out] == list(paths)


def test_predict_needs_exactly_one_of_run_and_pretrained(tmp_path):
    paths = _draw_digits(tmp_path)
    r = tinydl("predict", paths[1])
    assert r.returncode == 1 and "--pretrained" in r.stderr and "Traceback" not in r.stderr
    save_checkpoint(tmp_path / "best.safetensors", LeNet5().state_dict(), meta={})
    r = tinydl("predict", tmp_path, "--pretrained", "lenet", paths[1])
    assert r.returncode == 1 and "not both" in r.stderr and "Traceback" not in r.stderr
    r = tinydl("export", tmp_path, "--pretrained", "lenet", "--numpy", tmp_path / "out")
    assert r.returncode == 1 and "not both" in r.stderr and not (tmp_path / "out").exists()
    r = tinydl("predict", "--pretrained", "resnet", paths[1])
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_export_pretrained_numpy_matches_predict(tmp_path):
    paths = _draw_digits(tmp_path)
    r = tinydl("export", "--pretrained", "lenet", "--numpy", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    script = [sys.executable, str(tmp_path / "out" / "predict.py"), *map(str, paths.values())]
    alone = subprocess.run([*script, "--json"], capture_output=True, text=True, timeout=120)
    ours = tinydl("predict", "--pretrained", "lenet", *paths.values(), "--json")
    assert alone.returncode == 0 and ours.returncode == 0, alone.stderr + ours.stderr
    for a, b in zip(json.loads(alone.stdout), json.loads(ours.stdout)):
        assert [t["class"] for t in a["top3"]] == [t["class"] for t in b["top3"]]
        np.testing.assert_allclose([t["probability"] for t in a["top3"]],
                                   [t["probability"] for t in b["top3"]], atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_recorded_test_accuracy_is_recomputed(name):
    try:
        test = MNIST(train=False)
    except DatasetNotFoundError as exc:
        pytest.skip(f"the MNIST test set is not here ($TINYDL_DATA): {exc}")
    model, meta = load_pretrained(name)
    tf = normalize(meta["mean"], meta["std"])
    result = evaluate(model, DataLoader(ArrayDataset(test.data, test.targets, transform=tf), 1000))
    assert len(test.targets) == meta["test_images"]
    assert abs(result["accuracy"] - meta["test_accuracy"]) <= 1e-4


def test_a_wheel_carries_the_weights_and_records(tmp_path):
    """Built from a copy of the sources, so the build leaves nothing in the checkout."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "tinydl", src / "tinydl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for stem in PRETRAINED.values():
        for ext in ("safetensors", "json"):
            assert f"tinydl/layers/pretrained/{stem}.{ext}" in names
