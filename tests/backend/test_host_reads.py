"""A training step never reads a device array back to the host, checked on the CPU.

On a GPU each read (``bool(x)``, ``.item()``, ``float(x)``, a boolean-mask index whose size
must be known) waits for the device and stalls the step. Without a GPU, ``HostGuard`` stands
in for a CuPy array: NumPy underneath, a ``cupy`` type as far as tinydl can tell (it routes it
through the CuPy backend, patched here to a NumPy namespace whose results stay guarded), and
every host read is recorded with the tinydl line that made it."""

from __future__ import annotations

import traceback

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl import optim
from tinydl.backend import cupy_backend, is_device_array, kernels, to_numpy

READS: list[str] = []


def _record(what: str) -> None:
    frames = [f for f in traceback.extract_stack() if "/tinydl/" in f.filename.replace("\\", "/")]
    where = f"{frames[-1].filename.split('tinydl')[-1]}:{frames[-1].lineno}" if frames else "?"
    READS.append(f"{what} at tinydl{where}")


def _is_mask(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, np.ndarray) and p.dtype == np.bool_ for p in parts)


class HostGuard(np.ndarray):
    """NumPy data that tinydl takes for a CuPy array, recording every read by the host."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        # NOTE: keep 0-d results as arrays (NumPy would return a scalar) so that reading
        # them is seen too, as a 0-d CuPy array would need a copy to the host.
        return np.ndarray.__array_wrap__(self, arr, context, False)

    def __bool__(self):
        _record("bool()")
        return bool(self.view(np.ndarray))

    def __float__(self):
        _record("float()")
        return float(self.view(np.ndarray))

    def __int__(self):
        _record("int()")
        return int(self.view(np.ndarray))

    def __index__(self):
        _record("index")
        return self.view(np.ndarray).__index__()

    def item(self, *args):
        _record(".item()")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        _record(".tolist()")
        return self.view(np.ndarray).tolist()

    def get(self):
        _record(".get() (a copy to the host)")
        return self.view(np.ndarray).copy()

    def __getitem__(self, index):
        if _is_mask(index):
            _record("boolean-mask index")
        return super().__getitem__(index)

    def __setitem__(self, index, value):
        if _is_mask(index):
            _record("boolean-mask assignment")
        super().__setitem__(index, value)


HostGuard.__module__ = "cupy._host_guard"  # what is_device_array reads


def guard(a):
    """``a`` (and arrays inside tuples) as HostGuard views."""
    if isinstance(a, np.ndarray) and not isinstance(a, HostGuard):
        return a.view(HostGuard)
    if isinstance(a, tuple):
        return tuple(guard(x) for x in a)
    return a


class GuardedNumpy:
    """NumPy, as ``cupy`` would be used: functions return guarded arrays."""

    def __getattr__(self, name):
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):
            return lambda *args, **kwargs: guard(attr(*args, **kwargs))
        return attr


@pytest.fixture
def fake_gpu(monkeypatch):
    """Route HostGuard arrays through the CuPy paths, with NumPy doing the work."""
    xp = GuardedNumpy()
    monkeypatch.setattr(cupy_backend, "cupy_module", lambda device=None: xp)
    monkeypatch.setattr(
        cupy_backend, "uniform", lambda gen, shape, device: guard(gen.random(shape, np.float32))
    )
    # the reference kernels are written against the array module, so they run on the stand-in
    monkeypatch.setitem(kernels.KERNELS, "cuda", kernels.KERNELS["numpy"])
    monkeypatch.setattr(kernels, "fused_update", lambda name, param, grad: None)
    READS.clear()
    yield
    READS.clear()


def _to_fake_gpu(module):
    for t in list(module.parameters()) + list(module.buffers()):
        t.data = guard(t.data)
    return module


def test_the_stand_in_is_a_device_array_and_records_reads(fake_gpu):
    x = td.Tensor(guard(np.arange(4.0, dtype=np.float32)))
    assert is_device_array(x.data) and x.device == "cuda:0"
    assert isinstance((x * 2).sum().data, HostGuard)
    assert not READS
    _ = float((x * 2).sum().data), to_numpy(x.data)
    assert len(READS) == 2 and "float()" in READS[0] and ".get()" in READS[1]


MODELS = {
    "mlp": (lambda: nn.MLP(), (8, 1, 28, 28)),
    "lenet": (lambda: nn.LeNet5(), (4, 1, 28, 28)),
    "cnn": (lambda: nn.MnistCNN(), (2, 1, 28, 28)),
    "vgg": (lambda: nn.VGGSmall(widths=(8, 16, 32), hidden=16), (2, 1, 28, 28)),
    "layernorm": (
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.LayerNorm(12), nn.GELU(),
                              nn.Dropout(0.3), nn.Linear(12, 10)),
        (6, 1, 4, 4),
    ),
}
OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": lambda p: optim.Adam(p, lr=1e-3, amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-3),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=1e-2),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_a_training_step_reads_nothing_back(fake_gpu, model_name, opt_name):
    td.manual_seed(0)
    make, shape = MODELS[model_name]
    model = _to_fake_gpu(make())
    opt = OPTIMIZERS[opt_name](model.parameters())
    rng = np.random.default_rng(0)
    x = td.Tensor(guard(rng.standard_normal(shape).astype(np.float32)))
    y = td.Tensor(guard(rng.integers(0, 10, shape[0])))
    for _ in range(2):
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), max_norm=0.5)
        opt.step()
    assert isinstance(loss.data, HostGuard)
    assert all(isinstance(p.data, HostGuard) for p in model.parameters())
    assert not READS, "host reads in a training step:\n" + "\n".join(READS)
    assert np.isfinite(to_numpy(loss.data))


def test_losses_and_reductions_read_nothing_back(fake_gpu):
    rng = np.random.default_rng(1)
    x = td.Tensor(guard(rng.standard_normal((5, 4))), requires_grad=True)
    y = td.Tensor(guard(np.array([0, 3, 1, 2, -100])))
    w = td.Tensor(guard(np.array([1.0, 2.0, 0.5, 1.0])))
    losses = [
        F.cross_entropy(x, y, weight=w, ignore_index=-100),
        F.nll_loss(F.log_softmax(x, 1), y, reduction="sum"),
        x.prod(1).sum(),  # prod's backward with a zero in a slice too
        (x * np.float32(2.0)).sum(),  # a NumPy scalar follows the tensor's device
        F.layer_norm(x, (4,)).pow(2).sum(),
    ]
    sum(losses).backward()
    assert not READS, "host reads:\n" + "\n".join(READS)


def test_an_out_of_range_target_on_a_device_gives_nan_not_a_host_read(fake_gpu):
    x = td.Tensor(guard(np.zeros((2, 3), np.float32)))
    loss = F.cross_entropy(x, td.Tensor(guard(np.array([0, 7]))))
    assert not READS
    assert np.isnan(to_numpy(loss.data))
    with td.autograd.detect_anomaly(), pytest.raises(IndexError, match="target 7 is out of bounds"):
        F.cross_entropy(x, td.Tensor(guard(np.array([0, 7]))))
