"""DataLoader(device=...): batches delivered on the device, equal to the CPU batches; on the CPU
(``None`` or ``"cpu"``) the loader behaves as before."""

from __future__ import annotations

import numpy as np
import pytest

import tinydl as td
from tinydl.data import ArrayDataset, DataLoader, TensorDataset
from tinydl.data import transforms as T


def _images(n=10):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, 6, 6), dtype=np.uint8), np.arange(n), T.ToTensor())


class Items:
    """Items only (no ``get_batch``): dicts of arrays, collated by ``default_collate``."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.full(3, i, np.float32), "pair": (i, float(i))}


def _host(batch):
    if isinstance(batch, td.Tensor):
        return ("tensor", str(batch.device), batch.dtype, batch.numpy().tolist())
    if isinstance(batch, dict):
        return {k: _host(v) for k, v in batch.items()}
    return tuple(_host(b) for b in batch)


@pytest.mark.parametrize("device", [None, "cpu", td.Device("cpu")])
def test_cpu_device_changes_nothing(device):
    plain = [_host(b) for b in DataLoader(_images(), batch_size=4, shuffle=True,
                                          generator=np.random.default_rng(1))]
    loader = DataLoader(_images(), batch_size=4, shuffle=True, device=device,
                        generator=np.random.default_rng(1))
    assert [_host(b) for b in loader] == plain
    assert "device" not in repr(loader)
    assert isinstance(iter(loader), type(iter(DataLoader(_images(), batch_size=4))))


def test_unknown_device_is_refused_at_construction():
    with pytest.raises(td.DeviceError, match="unknown device"):
        DataLoader(_images(), device="tpu")


def _expected(batch, device):
    kind, _, dtype, values = batch
    return (kind, device, dtype, values)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_arrive_on_the_device(backend, prefetch):
    cpu = [_host(b) for b in DataLoader(_images(10), batch_size=4)]
    loader = DataLoader(_images(10), batch_size=4, device=backend.name, prefetch=prefetch)
    it = iter(loader)
    if backend.name != "cpu":
        assert len(it) == 3 and f"device='{backend.device}'" in repr(loader)
    got = [_host(b) for b in it]
    want = [tuple(_expected(f, str(backend.device)) for f in b) for b in cpu]
    assert got == want


def test_nested_batches_on_the_device(backend):
    batches = list(DataLoader(Items(), batch_size=2, device=backend.name))
    assert [b["x"].device for b in batches] == [backend.device] * 3
    assert isinstance(batches[0]["pair"], tuple)
    assert batches[2]["pair"][0].numpy().tolist() == [4]


def test_a_training_step_consumes_device_batches(backend):
    x = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    y = (x.sum(1) > 0).astype(np.int64)
    td.manual_seed(0)
    model = td.layers.Linear(5, 2).to(backend.name)
    opt = td.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=16, device=backend.name):
            loss = td.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_stopping_early_is_fine(cuda):
    loader = DataLoader(_images(40), batch_size=4, device="cuda")
    seen = []
    for i, batch in enumerate(loader):
        seen.append(batch[0])
        if i == 2:
            break
    td.cuda.synchronize()
    assert [b.device for b in seen] == ["cuda:0"] * 3


class _FakeCuda:
    """Just enough of ``cupy.cuda`` (streams, events, pinned memory) over NumPy to run the
    DataLoader's host-to-device path on a CPU; it records what the copier asked for."""

    def __init__(self):
        self.log = []
        fake = self

        class Event:
            def __init__(self, stream):
                self.stream, self.done = stream, False
                fake.log.append(("record", stream.name))

            def synchronize(self):
                self.done = True
                fake.log.append(("synchronize", self.stream.name))

        class Stream:
            def __init__(self, non_blocking=False, name="side"):
                self.name = name

            def record(self):
                return Event(self)

            def wait_event(self, event):
                fake.log.append(("wait", self.name, event.stream.name))

        class Device:
            def __init__(self, index):
                self.index = index

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        self.compute = Stream(name="compute")
        self.Stream, self.Device = Stream, Device
        self.get_current_stream = lambda: self.compute
        self.alloc_pinned_memory = lambda n: fake.log.append(("pinned", n)) or bytearray(n)


class _DeviceArray(np.ndarray):
    def set(self, host, stream=None):
        assert stream is not None and stream.name == "side", "the copy must use the side stream"
        self[...] = host


def test_device_batches_go_through_pinned_memory_and_a_side_stream(monkeypatch):
    from tinydl.backend import cupy_backend

    fake_cuda = _FakeCuda()
    fake = type("FakeCupy", (), {})()
    fake.cuda = fake_cuda
    fake.empty = lambda shape, dtype: np.empty(shape, dtype).view(_DeviceArray)
    monkeypatch.setattr(cupy_backend, "_state", {"probed": True, "cupy": fake, "count": 1,
                                                 "reason": None, "kernels": True})
    loader = DataLoader(_images(10), batch_size=4, device="cuda")
    cpu = [_host(b) for b in DataLoader(_images(10), batch_size=4)]
    got = []
    for x, y in loader:
        assert isinstance(x.data, _DeviceArray) and isinstance(y.data, _DeviceArray)
        got.append(tuple(_host(t) for t in (x, y)))
    assert got == cpu
    log = fake_cuda.log
    assert log.count(("wait", "side", "compute")) == 3  # each copy after the queued compute
    assert log.count(("wait", "compute", "side")) == 3  # each batch used after its copy
    assert sum(1 for e in log if e[0] == "pinned") == 6  # images and labels of 3 batches
    assert log.count(("synchronize", "side")) == 3  # every pinned buffer released after use
