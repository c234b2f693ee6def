"""``tinydl export RUN --numpy DIR``: the written ``predict.py`` runs where tinydl cannot be
imported (only NumPy and Pillow on the path) and prints what ``tinydl predict`` prints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import needs_digits, tinydl
from tinydl.data import MNIST, DatasetNotFoundError
from tinydl.io import save_checkpoint
from tinydl.layers import MODELS, BatchNorm1d, BatchNorm2d, Flatten, Linear, Sequential, Tanh
from tinydl.recipes.classifier import predict_files

Image = pytest.importorskip("PIL.Image", reason="the exported program reads images with Pillow")

TOL = 1e-5


def _bare_python(script_dir, *args):
    """Run ``python -S`` with only NumPy's and Pillow's folders on the path, from a folder
    without any ``.pth`` file, so neither an installed nor an editable tinydl is importable."""
    roots = {str(Path(m.__file__).resolve().parents[1]) for m in (np, Image)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(sorted(roots))
    return subprocess.run(
        [sys.executable, "-S", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=script_dir,
        env=env,
    )


def _digit_images(folder, n=3):
    """MNIST test digits (from $TINYDL_DATA) saved as PNGs, dark on a light larger canvas as a
    photo would be; else strokes drawn with Pillow."""
    try:
        digits = MNIST(train=False).data[:n]
    except DatasetNotFoundError:
        digits = []
        for i in range(n):
            from PIL import ImageDraw

            img = Image.new("L", (28, 28))
            ImageDraw.Draw(img).line([(8 + i, 4), (14, 24), (20 - i, 6)], fill=255, width=3)
            digits.append(np.asarray(img))
    paths = []
    for i, digit in enumerate(digits):
        canvas = np.full((90, 70), 245, np.uint8)
        canvas[10:66, 5:61] = 255 - np.kron(digit, np.ones((2, 2), np.uint8))
        paths.append(Path(folder) / f"digit{i}.png")
        Image.fromarray(canvas).save(paths[-1])
    return paths


def _same_predictions(got_json, want, paths):
    """``want``: predict_files' ``(class, name, probability)`` triples for ``paths``."""
    got = json.loads(got_json)
    assert [g["image"] for g in got] == [str(p) for p in paths]
    for g, w in zip(got, want):
        assert [(t["class"], t["name"]) for t in g["top3"]] == [(c, n) for c, n, _ in w]
        probs = np.array([t["probability"] for t in g["top3"]])
        np.testing.assert_allclose(probs, [q for _, _, q in w], rtol=0, atol=TOL)


def test_the_bare_python_cannot_import_tinydl(tmp_path):
    r = _bare_python(tmp_path, "-c", "import numpy, PIL.Image; import tinydl")
    assert r.returncode != 0 and "No module named 'tinydl'" in r.stderr, r.stderr


def _checkpoint(path, name, classes, preprocess, rng):
    """An untrained zoo model with random batch-norm statistics (so that eval-mode batch norm
    is not the identity), saved as a run's checkpoint."""
    model = MODELS[name](num_classes=len(classes))
    for m in model.modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.running_mean.data[...] = rng.normal(0, 0.2, m.num_features)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, m.num_features)
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[...] = rng.normal(0, 0.2, m.num_features)
    meta = {"model": name, "model_kwargs": {"num_classes": len(classes)}, "mean": 0.2,
            "std": 0.35, "classes": classes, "preprocess": preprocess}  # fmt: skip
    save_checkpoint(path, model.state_dict(), meta=meta)
    return path


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("preprocess", ["digit", "resize"])
def test_every_zoo_model_agrees_with_tinydl(name, preprocess, tmp_path):
    from tinydl.export_numpy import export_numpy

    classes = [str(i) for i in range(10)] if preprocess == "digit" else ["cat", "dog", "owl"]
    ckpt = _checkpoint(
        tmp_path / "m.safetensors", name, classes, preprocess, np.random.default_rng(0)
    )
    script = export_numpy(ckpt, tmp_path / "export")
    assert script == tmp_path / "export" / "predict.py"
    assert len(script.read_text().splitlines()) <= 200
    paths = _digit_images(tmp_path)
    r = _bare_python(tmp_path, script, *paths, "--json")
    assert r.returncode == 0, r.stderr
    _same_predictions(r.stdout, predict_files(ckpt, paths), paths)


def test_the_weights_are_plain_arrays(tmp_path):
    from tinydl.export_numpy import export_numpy

    ckpt = _checkpoint(tmp_path / "m.safetensors", "cnn", list("0123456789"), "digit",
                       np.random.default_rng(1))  # fmt: skip
    export_numpy(ckpt, tmp_path / "export")
    with np.load(tmp_path / "export" / "weights.npz", allow_pickle=False) as w:
        assert all(w[k].dtype == np.float32 for k in w.files)
        assert "0.weight" in w.files and "1.running_var" in w.files


def test_a_layer_without_a_numpy_version_is_refused_and_nothing_written(tmp_path, monkeypatch):
    import tinydl.export_numpy as ex

    model = Sequential(Flatten(), Linear(784, 10), Tanh())
    monkeypatch.setattr(ex, "load_run", lambda run: (model, {"model": "custom"}))
    with pytest.raises(ValueError, match=r"the layer 2 \(Tanh\)"):
        ex.export_numpy("run", tmp_path / "export")
    assert not (tmp_path / "export").exists()


@pytest.fixture(scope="module")
def trained_export(tmp_path_factory):
    """A LeNet5 trained for an epoch on 1000 digits, exported with the command line."""
    root = tmp_path_factory.mktemp("numpy-export")
    r = tinydl("train", "--model", "lenet", "--epochs", "1", "--limit", "1000", "--val-size",
               "100", "--out", root / "run")  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    r = tinydl("export", root / "run", "--numpy", root / "export")
    assert r.returncode == 0, r.stderr
    assert "predict.py" in r.stdout
    return root


@needs_digits
def test_the_exported_file_prints_what_tinydl_predict_prints(trained_export):
    root = trained_export
    paths = _digit_images(root, n=4)
    script = root / "export" / "predict.py"
    for flags in ([], ["--json"]):
        want = tinydl("predict", root / "run", *paths, *flags)
        got = _bare_python(root, script, *paths, *flags)
        assert want.returncode == got.returncode == 0, want.stderr + got.stderr
        if flags:
            _same_predictions(got.stdout, predict_files(root / "run", paths), paths)
        else:
            assert got.stdout == want.stdout


@needs_digits
def test_a_missing_image_is_one_line_and_exit_1(trained_export):
    r = _bare_python(trained_export, trained_export / "export" / "predict.py", "nope.png")
    assert r.returncode == 1
    assert r.stderr.strip() == "predict.py: error: no image file at nope.png"


def test_export_without_a_format_is_one_line(tmp_path):
    r = tinydl("export", tmp_path)
    assert r.returncode != 0 and "--numpy DIR" in r.stderr and "Traceback" not in r.stderr
