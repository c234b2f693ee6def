"""The generic training loop on a tiny synthetic task: a new shuffle every epoch, the same run
for the same seed, resume after Ctrl-C, the run folder, callbacks, and no host read per step."""

import json

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl import optim, training
from tinydl.data import DataLoader, TensorDataset
from tinydl.io import load_checkpoint
from tinydl.training import Callback, Trainer, count_correct, evaluate

BATCHES = 5  # training batches per epoch: 40 samples of 8


class Recording(TensorDataset):
    """Remembers the indices of every batch the loader fetches."""

    def __init__(self, *arrays):
        super().__init__(*arrays)
        self.batches = []

    def get_batch(self, indices):
        self.batches.append(np.asarray(indices).tolist())
        return super().get_batch(indices)


def _task(n=48):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _fit(epochs, out=None, seed=0, callbacks=(), resume=False, n=48):
    td.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    trainer = Trainer(model, opt, F.cross_entropy, metrics={"accuracy": count_correct},
                      out=out, seed=seed, callbacks=callbacks, progress=False, plots=False,
                      log=lambda m: None)  # fmt: skip
    x, y = _task(n)
    train = Recording(x[:-8], y[:-8])
    val = DataLoader(TensorDataset(x[-8:], y[-8:]), 8)
    trainer.fit(DataLoader(train, 8, shuffle=True), val, epochs, resume=resume)
    return trainer, train.batches


def _losses(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_second")}
            for h in history]  # fmt: skip


def test_every_epoch_draws_a_new_order_and_the_same_seed_repeats_it():
    _, first = _fit(3)
    _, again = _fit(3)
    _, other = _fit(3, seed=1)
    epochs = [sum(first[i * BATCHES : (i + 1) * BATCHES], []) for i in range(3)]
    assert all(sorted(e) == list(range(40)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3, "an epoch repeated another epoch's order"
    assert first == again, "the same seed drew a different order"
    assert first != other, "another seed drew the same order"


class StopAt(Callback):
    """Ctrl-C in the middle of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.stop_epoch = epoch

    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch + 1 == self.stop_epoch and batch == 2:
            raise KeyboardInterrupt


def test_ctrl_c_saves_and_resume_ends_with_the_uninterrupted_weights(tmp_path):
    full, _ = _fit(3, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _fit(3, tmp_path / "cut", callbacks=[StopAt(2)])
    cut = load_checkpoint(tmp_path / "cut" / "interrupted.safetensors")
    assert cut["epoch"] == 1 and len(cut["metrics"]["history"]) == 1
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed, _ = _fit(3, tmp_path / "cut", resume=True)
    assert _losses(resumed.history) == _losses(full.history)
    for name in ("last.safetensors", "best.safetensors"):
        a = load_checkpoint(tmp_path / "full" / name)
        b = load_checkpoint(tmp_path / "cut" / name)
        assert a["epoch"] == b["epoch"]
        for key in a["model_state"]:
            np.testing.assert_array_equal(a["model_state"][key], b["model_state"][key], key)


def test_resume_refuses_a_different_plan(tmp_path):
    _fit(2, tmp_path)
    with pytest.raises(ValueError, match="planned for 2 epochs"):
        _fit(3, tmp_path, resume=True)


def test_run_folder_best_checkpoint_and_metrics(tmp_path):
    trainer, _ = _fit(3, tmp_path)
    best = load_checkpoint(tmp_path / "best.safetensors")
    losses = [h["val_loss"] for h in trainer.history]
    assert best["epoch"] == 1 + int(np.argmin(losses)) and trainer.best_score() == min(losses)
    assert best["meta"]["epochs"] == 3
    assert load_checkpoint(tmp_path / "last.safetensors")["epoch"] == 3
    assert list(trainer.history[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss",
                                        "val_accuracy", "seconds", "images_per_second"]  # fmt: skip
    written = trainer.write_metrics({"note": "x"})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == written and saved["note"] == "x" and len(saved["history"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.safetensors", "last.safetensors", "metrics.json"]  # fmt: skip


def test_callbacks_see_every_step_and_may_add_to_the_history():
    class Log(Callback):
        def __init__(self):
            self.calls = []

        def on_fit_start(self, trainer):
            self.calls.append("fit")

        def on_epoch_start(self, trainer, epoch):
            self.calls.append(f"epoch {epoch}")

        def on_after_backward(self, trainer):
            assert all(p.grad is not None for p in trainer.model.parameters())
            self.calls.append("grads")

        def on_batch_end(self, trainer, batch, loss):
            self.calls.append(f"batch {batch}")

        def on_epoch_end(self, trainer, epoch, record):
            record["lr"] = trainer.optimizer.param_groups[0]["lr"]
            self.calls.append(f"end {epoch}")

        def on_fit_end(self, trainer):
            self.calls.append("done")

    log = Log()
    trainer, _ = _fit(2, callbacks=[log])
    steps = [c for b in range(BATCHES) for c in ("grads", f"batch {b}")]
    assert log.calls == ["fit", "epoch 1", *steps, "end 1", "epoch 2", *steps, "end 2", "done"]
    assert [h["lr"] for h in trainer.history] == [1e-2, 1e-2]


def test_monitor_must_name_a_history_key():
    model = nn.Linear(4, 2)
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), monitor="val_accuracy")
    with pytest.raises(ValueError, match="val_accuracy"):
        trainer.fit([], [], epochs=1)
    with pytest.raises(ValueError, match="val_loss"):
        Trainer(model, optim.SGD(model.parameters(), lr=0.1)).fit([], None, epochs=1)


def test_evaluate_matches_a_direct_computation():
    td.manual_seed(0)
    model = nn.Linear(4, 2)
    x, y = _task()
    got = evaluate(model, DataLoader(TensorDataset(x, y), 10), F.cross_entropy,
                   {"accuracy": count_correct}, predict=lambda out: out.argmax(1))  # fmt: skip
    with td.no_grad():
        logits = model(td.tensor(x))
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, td.tensor(y)).item(), rel=1e-6)
    np.testing.assert_array_equal(got["pred"], logits.data.argmax(1))
    np.testing.assert_array_equal(got["target"], y)
    assert got["accuracy"] == pytest.approx(float((got["pred"] == y).mean()))


# -- no host read per step ---------------------------------------------------------------------


class DeviceStandIn(np.ndarray):
    """Stands in for a device array: reading a value back on the host is an error."""

    def _host_read(self, *args, **kwargs):
        raise AssertionError("a value was read back to the host inside the loop")

    item = tolist = __float__ = __int__ = __bool__ = __index__ = _host_read


class StandInModel(nn.Module):
    def forward(self, x):
        return td.Tensor((x.data[:, :2] * 1.0).view(DeviceStandIn))


def _stand_in_loss(output, target):
    return td.Tensor(np.float32(0.5) * np.ones((), np.float32).view(DeviceStandIn))


@pytest.fixture
def host_copies(monkeypatch):
    """Counts the loop's copies to the host (``tinydl.backend.to_numpy`` in training.py)."""
    calls = []

    def counting(x):
        calls.append(type(x))
        return np.asarray(x).view(np.ndarray)

    monkeypatch.setattr(training, "to_numpy", counting)
    return calls


@pytest.mark.parametrize("batches", [2, 8])
def test_evaluate_copies_to_the_host_once_at_the_end(host_copies, batches):
    x, y = _task(4 * batches)
    loader = [(td.Tensor(x[i : i + 4].view(DeviceStandIn)), td.Tensor(y[i : i + 4].view(DeviceStandIn)))
              for i in range(0, len(y), 4)]  # fmt: skip
    got = evaluate(StandInModel(), loader, _stand_in_loss, {"accuracy": count_correct},
                   predict=lambda out: out.argmax(1))  # fmt: skip
    assert len(host_copies) == 3, "loss and metric sums, predictions, targets: one copy each"
    assert got["loss"] == pytest.approx(0.5) and len(got["pred"]) == len(y)
    assert got["accuracy"] == pytest.approx(float((x[:, :2].argmax(1) == y).mean()))


@pytest.mark.parametrize("n", [48, 88])
def test_training_reads_the_device_once_per_epoch_and_split(host_copies, n):
    _fit(2, n=n)
    assert len(host_copies) == 4, "2 epochs x (train, validation), whatever the batch count"


def test_a_training_step_reads_no_value_back(monkeypatch):
    def host_read(self, *args):
        raise AssertionError("a value was read back to the host inside a training step")

    for name in ("item", "tolist", "numpy", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(td.Tensor, name, host_read)
    trainer, _ = _fit(2)
    assert len(trainer.history) == 2
