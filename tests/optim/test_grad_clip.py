import math

import numpy as np
import pytest

import tinydl as td
from tests.devices import CPU
from tinydl.optim import NonFiniteGradError, clip_grad_norm_, clip_grad_value_


def _params(backend, rng, scale, dtype=np.float64):
    shapes = [(3, 4), (5,), (2, 2, 2)]
    ps = [td.Parameter(td.zeros(*s, dtype=dtype, device=backend.name)) for s in shapes]
    for p in ps:
        p.grad = backend.tensor((scale * rng.standard_normal(p.shape)).astype(dtype))
    ps.append(td.Parameter(td.zeros(2, dtype=dtype, device=backend.name)))  # no gradient: skipped
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.3, 1e3])
def test_clip_grad_norm_matches_torch(backend, torch, rng, norm_type, max_norm):
    ps = _params(backend, rng, 2.0)
    tps = [torch.nn.Parameter(torch.from_numpy(backend.numpy(p).copy())) for p in ps]
    for p, q in zip(ps, tps):
        q.grad = None if p.grad is None else torch.from_numpy(backend.numpy(p.grad).copy())
    grads = [p.grad.data for p in ps if p.grad is not None]
    ours = clip_grad_norm_(ps, max_norm, norm_type)
    theirs = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type, foreach=False)
    assert isinstance(ours, td.Tensor) and ours.shape == ()
    assert float(ours) == pytest.approx(float(theirs), rel=1e-12)
    for p, q, g in zip(ps, tps, grads):
        np.testing.assert_allclose(backend.numpy(p.grad), q.grad.numpy(), rtol=1e-12)
        assert p.grad.data is g  # clipped in place


def test_clip_grad_norm_closed_form_and_in_place(backend):
    p = td.Parameter(td.zeros(2, device=backend.name))
    p.grad = backend.tensor([3.0, 4.0])
    g = p.grad.data
    total = clip_grad_norm_(p, max_norm=1.0)
    assert float(total) == pytest.approx(5.0)
    assert p.grad.data is g and g.dtype == np.float32
    np.testing.assert_allclose(backend.numpy(g), np.array([3.0, 4.0]) / (5.0 + 1e-6), rtol=1e-6)
    assert float(clip_grad_norm_([p], 10.0)) == pytest.approx(1.0, rel=1e-6)
    # under max_norm: kept
    np.testing.assert_allclose(backend.numpy(g), np.array([0.6, 0.8]), rtol=1e-5)
    assert float(clip_grad_norm_([td.Parameter(td.zeros(2, device=backend.name))], 1.0)) == 0.0


def test_nonfinite_norm_raises_only_when_asked(backend):
    p = td.Parameter(td.zeros(2, device=backend.name))
    p.grad = backend.tensor([np.inf, 1.0])
    with pytest.raises(NonFiniteGradError, match="error_if_nonfinite=False"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert isinstance(NonFiniteGradError("x"), RuntimeError)
    assert math.isinf(float(clip_grad_norm_([p], 1.0)))


def test_clip_grad_value_closed_form(backend, rng):
    p = td.Parameter(td.zeros(6, dtype="float64", device=backend.name))
    values = rng.standard_normal(6) * 3
    p.grad = backend.tensor(values)
    g = p.grad.data
    clip_grad_value_([p], 1.5)
    assert p.grad.data is g
    np.testing.assert_array_equal(backend.numpy(g), np.clip(values, -1.5, 1.5))


def test_clip_grad_value_matches_torch(backend, torch, rng):
    values = rng.standard_normal((3, 4)) * 3
    p = td.Parameter(td.zeros(3, 4, dtype="float64", device=backend.name))
    p.grad = backend.tensor(values)
    clip_grad_value_(p, 0.7)
    q = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    q.grad = torch.from_numpy(values.copy())
    torch.nn.utils.clip_grad_value_([q], 0.7)
    np.testing.assert_array_equal(backend.numpy(p.grad), q.grad.numpy())


class _DeviceValue(np.ndarray):
    """Stands in for a GPU array: reading its value on the host (bool, float, item) fails."""

    def _host_read(self, *args):
        raise AssertionError("clip_grad_norm_ read a value back to the host")

    __bool__ = __float__ = __int__ = __index__ = item = tolist = _host_read


class _DeviceNumpy:
    """NumPy whose results stay 'on the device' (as _DeviceValue)."""

    def __getattr__(self, name):
        fn = getattr(np, name)

        def on_device(*args, **kwargs):
            out = fn(*args, **kwargs)
            if isinstance(out, (np.ndarray, np.generic)):
                return np.asarray(out).view(_DeviceValue)
            return out

        return on_device if callable(fn) else fn


@pytest.mark.parametrize("max_norm", [0.3, 1e3])  # clipped, and not
def test_clip_grad_norm_reads_nothing_back_to_the_host(rng, monkeypatch, max_norm):
    ps = _params(CPU, rng, 2.0, np.float32)
    reference = [td.Parameter(td.zeros(*p.shape)) for p in ps]
    for p, q in zip(ps, reference):
        q.grad = None if p.grad is None else td.Tensor(p.grad.data.copy())
    want = clip_grad_norm_(reference, max_norm)
    monkeypatch.setattr("tinydl.optim.clip.get_array_module", lambda *a: _DeviceNumpy())
    total = clip_grad_norm_(ps, max_norm)  # fails on any bool()/float()/.item() of a result
    assert np.asarray(total.data).tobytes() == want.data.tobytes()
    for p, q in zip(ps, reference):
        if p.grad is not None:
            assert p.grad.data.tobytes() == q.grad.data.tobytes()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_unclipped_gradients_keep_every_bit(dtype):
    info = np.finfo(dtype)
    special = [0.0, -0.0, info.smallest_subnormal, -info.tiny, info.eps, -1.5, 3.0, 100.0]
    p = td.Parameter(td.zeros(len(special), dtype=dtype))
    p.grad = td.Tensor(np.array(special, dtype=dtype))
    before = p.grad.data.copy()
    clip_grad_norm_([p], max_norm=1e3)  # the norm (about 100) is under max_norm
    assert p.grad.data.tobytes() == before.tobytes()
