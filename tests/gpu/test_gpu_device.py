"""Devices: parsing, ``td.cuda``, the errors that say what is missing, moving tensors and
modules, creation functions with ``device=``, mixing devices. Most of it runs without a GPU."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import tinydl as td
from tinydl import layers as nn
from tinydl.backend import cupy_backend


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a stand-in ``cupy`` module whose CUDA runtime reports ``count`` GPUs (or raises),
    with tinydl's availability check reset; returns a function ``make(count_or_error)``."""

    def make(count):
        def get_device_count():
            if isinstance(count, Exception):
                raise count
            return count

        cupy = types.ModuleType("cupy")
        cupy.__version__ = "99.0-fake"
        cupy.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
        )
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        # "kernels": True keeps the fake from registering CUDA kernels
        monkeypatch.setattr(
            cupy_backend,
            "_state",
            {"probed": False, "cupy": None, "count": 0, "reason": None, "kernels": True},
        )
        return cupy

    return make


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "spec, kind, index, text",
    [
        ("cpu", "cpu", None, "cpu"),
        ("cuda", "cuda", 0, "cuda:0"),
        ("cuda:0", "cuda", 0, "cuda:0"),
        ("cuda:3", "cuda", 3, "cuda:3"),
    ],
)
def test_device_strings(spec, kind, index, text):
    d = td.Device(spec)
    assert (d.type, d.index, str(d)) == (kind, index, text)
    assert d == spec and d == td.Device(d) and hash(d) == hash(td.Device(text))


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:0", "cuda:-1", "", "CUDA"])
def test_bad_device_strings_are_explained(spec):
    with pytest.raises(td.DeviceError, match="use 'cpu', 'cuda' or 'cuda:N'"):
        td.Device(spec)


def test_device_must_be_a_string():
    with pytest.raises(td.DeviceError, match="expected a string"):
        td.Device(0)


def test_cpu_device_uses_numpy():
    assert td.Device("cpu").xp is np
    with td.Device("cpu").use():
        assert td.zeros(2).device == "cpu"


# ----------------------------------------------------------------------------- without CUDA


def test_import_tinydl_does_not_import_cupy():
    code = "import sys, tinydl; assert 'cupy' not in sys.modules, 'cupy was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cuda_namespace_answers_without_a_gpu():
    if td.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert td.cuda.device_count() == 0
    assert "CuPy" in td.cuda.why_unavailable()
    td.cuda.synchronize()  # a no-op, not an error
    assert td.info()["cuda"].startswith("not available")


def _cuda_requests():
    yield "zeros", lambda: td.zeros(2, device="cuda")
    yield "randn", lambda: td.randn(2, 3, device="cuda:0")
    yield "tensor", lambda: td.tensor([1.0, 2.0], device="cuda")
    yield "arange", lambda: td.arange(4, device=td.Device("cuda"))
    yield "Tensor.to", lambda: td.ones(2).to("cuda")
    yield "Tensor.cuda", lambda: td.ones(2).cuda()
    yield "Module.to", lambda: nn.Linear(2, 3).to("cuda")
    yield "DataLoader", lambda: td.data.DataLoader([1, 2], device="cuda")


@pytest.mark.parametrize("name, request_cuda", list(_cuda_requests()), ids=lambda v: str(v))
def test_asking_for_cuda_without_cupy_says_so(name, request_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail, as without CuPy
    monkeypatch.setattr(
        cupy_backend,
        "_state",
        {"probed": False, "cupy": None, "count": 0, "reason": None, "kernels": False},
    )
    with pytest.raises(td.DeviceError, match=r"CuPy is not installed.*pip install tinydl\[gpu\]"):
        request_cuda()
    assert not td.cuda.is_available() and td.cuda.device_count() == 0


@pytest.mark.parametrize("runtime", [0, RuntimeError("cudaErrorNoDevice: no CUDA-capable device")])
def test_cupy_without_a_gpu_says_so(fake_cupy, runtime):
    fake_cupy(runtime)
    assert not td.cuda.is_available()
    with pytest.raises(td.DeviceError, match="CuPy 99.0-fake is installed but finds no CUDA GPU"):
        td.zeros(2, device="cuda")
    detail = "cudaErrorNoDevice" if isinstance(runtime, Exception) else "reports 0 devices"
    assert detail in td.cuda.why_unavailable()


def test_asking_for_a_gpu_that_is_not_there(fake_cupy):
    fake_cupy(1)
    assert td.cuda.is_available() and td.cuda.device_count() == 1
    with pytest.raises(td.DeviceError, match=r"'cuda:1': there are 1 CUDA GPU\(s\) here"):
        td.zeros(2, device="cuda:1")


def test_module_to_cuda_failure_leaves_the_module_alone(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(
        cupy_backend,
        "_state",
        {"probed": False, "cupy": None, "count": 0, "reason": None, "kernels": False},
    )
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    before = {k: v.data for k, v in model.state_dict().items()}
    with pytest.raises(td.DeviceError):
        model.to("cuda")
    after = model.state_dict()
    assert all(after[k].data is before[k] for k in before)


# ----------------------------------------------------------------------------- on the CPU


def test_to_cpu_is_the_same_tensor():
    x = td.randn(3, requires_grad=True)
    assert x.to("cpu") is x and x.cpu() is x and x.to(td.Device("cpu")) is x
    assert x.to("cpu", dtype=td.float64).dtype == np.float64


def test_module_to_cpu_keeps_parameters_and_buffers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    params = list(model.parameters())
    data = [p.data for p in params]
    assert model.to("cpu") is model
    assert [p.data for p in model.parameters()] == data  # same arrays, not copies
    model.to("cpu", dtype=td.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(b.dtype in (np.float64, np.int64) for b in model.buffers())
    assert list(model.parameters())[0] is params[0]


@pytest.mark.parametrize("device", [None, "cpu", td.Device("cpu")])
def test_creation_functions_take_a_device(device):
    made = [
        td.zeros(2, 3, device=device),
        td.ones(2, device=device),
        td.empty(2, device=device),
        td.full((2,), 1.5, device=device),
        td.arange(3, device=device),
        td.linspace(0, 1, 5, device=device),
        td.eye(2, device=device),
        td.rand(2, device=device),
        td.randn(2, device=device),
        td.randint(0, 5, (3,), device=device),
        td.tensor([1.0, 2.0], device=device),
        td.as_tensor(np.ones(2), device=device),
        td.zeros_like(td.ones(2), device=device),
        td.randn_like(td.ones(2), device=device),
    ]
    assert all(t.device == "cpu" and isinstance(t.data, np.ndarray) for t in made)


def test_seeded_draws_do_not_depend_on_the_device_argument():
    td.manual_seed(3)
    a = td.randn(4, device="cpu")
    td.manual_seed(3)
    b = td.randn(4)
    assert a.numpy().tobytes() == b.numpy().tobytes()


def test_as_tensor_shares_memory_on_the_same_device():
    a = np.arange(3.0)
    assert td.as_tensor(a, device="cpu").data is a
    t = td.ones(2)
    assert td.as_tensor(t, device="cpu") is t


class _FakeGpuArray:
    """Just enough of a CuPy array for ``get_device``: tensors on two devices meet in an op."""

    __module__ = "cupy._core.core"

    def __init__(self, array):
        self._a = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.device = types.SimpleNamespace(id=0)


def test_mixing_devices_in_an_op_is_a_clear_error():
    on_gpu = td.Tensor.from_array(_FakeGpuArray(np.ones(2, np.float32)))
    assert on_gpu.device == "cuda:0"
    with pytest.raises(td.DeviceError, match=r"Add: tensors on different devices \(cpu and "
                                             r"cuda:0\); move them with .to\(device\) first"):
        td.ones(2) + on_gpu


def test_load_state_dict_from_numpy_and_lists_on_cpu():
    model = nn.Linear(2, 1)
    model.load_state_dict({"weight": [[1.0, 2.0]], "bias": np.array([3.0])})
    assert model.weight.tolist() == [[1.0, 2.0]] and model.bias.tolist() == [3.0]


# ----------------------------------------------------------------------------- on a GPU


def test_tensor_round_trip(backend):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = backend.tensor(a, requires_grad=True)
    assert t.device == backend.device and t.requires_grad
    back = t.to("cpu")
    assert isinstance(back.data, np.ndarray) and back.device == "cpu"
    np.testing.assert_array_equal(back.detach().numpy(), a)
    (back * back).sum().backward()  # the gradient travels back to the device
    assert t.grad.device == backend.device
    np.testing.assert_array_equal(backend.numpy(t.grad), 2 * a)
    assert "device='cuda" in repr(t) if backend.name == "cuda" else "device" not in repr(t)


def test_creation_on_the_backend(backend):
    made = [
        td.zeros(2, device=backend.name),
        td.ones(2, dtype=td.float64, device=backend.name),
        td.full((2,), 7, device=backend.name),
        td.arange(0, 1, 0.25, device=backend.name),
        td.eye(3, device=backend.name),
        td.randn(3, device=backend.name),
        td.randint(0, 3, (4,), device=backend.name),
        td.tensor(td.ones(2).to(backend.name)),
    ]
    for t in made:
        assert t.device == backend.device, t
    td.manual_seed(5)
    on_device = td.randn(3, device=backend.name)
    td.manual_seed(5)
    np.testing.assert_array_equal(backend.numpy(on_device), td.randn(3).numpy())


def test_mixing_real_devices_raises(cuda):
    with pytest.raises(td.DeviceError, match="different devices"):
        td.ones(2) + td.ones(2, device="cuda")
    with pytest.raises(td.DeviceError, match="different devices"):
        td.ones(2, device="cuda") @ td.ones(2)


def test_module_to_cuda_moves_parameters_buffers_and_grads(cuda):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 1))
    model(td.randn(2, 1, 3, 3)).sum().backward()
    params = list(model.parameters())
    model.to("cuda")
    assert list(model.parameters())[0] is params[0]  # the same Parameter objects
    for t in list(model.parameters()) + list(model.buffers()):
        assert t.device == "cuda:0", t
    assert all(p.grad.device == "cuda:0" for p in model.parameters())
    assert model[1].num_batches_tracked.dtype == np.int64
    model.to("cpu")
    assert all(isinstance(t.data, np.ndarray) for t in model.state_dict().values())


def test_state_dicts_cross_devices(cuda):
    cpu_model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    gpu_model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).to("cuda")
    gpu_model.load_state_dict(cpu_model.state_dict())
    for k, v in gpu_model.state_dict().items():
        assert v.device == "cuda:0"
        np.testing.assert_array_equal(cuda.numpy(v), cpu_model.state_dict()[k].numpy())
    cpu_model.load_state_dict(gpu_model.state_dict())  # GPU -> CPU
