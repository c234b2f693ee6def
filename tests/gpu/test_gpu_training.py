"""A few hundred training steps on the device reach the loss of the same run on the CPU.

The same seed gives the same initial weights on both devices (drawn on the host), the data is
copied onto the device once, and the step loop never reads a value back until the end (the
losses stay on the device). On the CPU backend a short run is repeated and must be
bit-identical (the long CPU reference runs only beside a GPU run).
"""

from __future__ import annotations

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tests.devices import CPU, Backend
from tinydl import layers as nn
from tinydl import optim

STEPS, CPU_STEPS, BATCH, SAMPLES = 300, 10, 64, 2048


def _dataset():
    """Ten noisy class templates of MNIST's shape: learnable, but not in a few steps."""
    rng = np.random.default_rng(0)
    templates = rng.standard_normal((10, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, SAMPLES)
    x = 0.4 * templates[y] + rng.standard_normal((SAMPLES, 1, 28, 28)).astype(np.float32)
    return x, y


def _model():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


OPTIMIZERS = {
    "sgd_momentum": lambda p: optim.SGD(p, lr=0.02, momentum=0.9),
    "adam": lambda p: optim.Adam(p, lr=1e-3),
}


def _train(backend: Backend, opt_name: str, steps: int) -> np.ndarray:
    td.manual_seed(0)
    model = _model().to(backend.name)
    opt = OPTIMIZERS[opt_name](model.parameters())
    x, y = _dataset()
    x, y = backend.tensor(x), backend.tensor(y)  # onto the device once
    losses = []
    for step in range(steps):
        start = (step * BATCH) % SAMPLES
        xb, yb = x[start : start + BATCH], y[start : start + BATCH]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return np.array([backend.numpy(v) for v in losses], dtype=np.float64)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_training_on_the_device_reaches_the_cpu_loss(backend, opt_name):
    if backend.name == "cpu":
        first, second = (_train(backend, opt_name, CPU_STEPS) for _ in range(2))
        assert first.tobytes() == second.tobytes(), "two CPU runs with one seed differ"
        return
    cpu = _train(CPU, opt_name, STEPS)
    dev = _train(backend, opt_name, STEPS)
    assert cpu[-50:].mean() < 0.5 * cpu[:10].mean(), f"the CPU run did not learn: {cpu[::50]}"
    early = 20 if opt_name == "sgd_momentum" else 3
    np.testing.assert_allclose(dev[:early], cpu[:early], rtol=1e-3,
                               err_msg=f"the first {early} losses differ")
    final_cpu, final_dev = cpu[-50:].mean(), dev[-50:].mean()
    assert abs(final_dev - final_cpu) <= 0.05 * final_cpu + 0.01, (
        f"mean loss of the last 50 steps: {final_dev:.5f} on {backend.name}, {final_cpu:.5f} "
        f"on the CPU; every 25th step: {dev[::25].round(4)} vs {cpu[::25].round(4)}"
    )


def test_no_host_sync_needed_to_build_a_step(backend):
    """A training step's ops return device tensors without reading values back."""
    x = backend.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    loss = (F.relu(x) * 2).mean()
    loss.backward()
    assert loss.device == backend.device and x.grad.device == backend.device
    assert isinstance(loss.item(), float)  # .item() is the explicit sync, for logging
