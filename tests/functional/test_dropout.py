import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tinydl.testing import tensors


def test_identity_when_not_training_or_p_zero(backend):
    x = td.randn(3, 4, requires_grad=True, device=backend.name)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_outside_unit_interval_raises_with_value(p):
    with pytest.raises(ValueError, match=f"dropout: probability p must be in \\[0, 1\\], got {p}"):
        F.dropout(td.randn(3), p)


def test_p_one_gives_zeros_like_pytorch(backend):
    x = td.randn(3, 4, requires_grad=True, device=backend.name)
    out = F.dropout(x, 1.0)
    out.sum().backward()
    assert out.device == backend.device
    assert not backend.numpy(out).any() and not backend.numpy(x.grad).any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_scaling_and_drop_rate(backend, p):
    x = td.ones(200_000, device=backend.name)
    out = backend.numpy(F.dropout(x, p, generator=np.random.default_rng(1)))
    assert set(np.unique(out).tolist()) <= {0.0, np.float32(1 / (1 - p))}
    assert abs((out == 0).mean() - p) < 0.01
    assert abs(out.mean() - 1.0) < 0.02  # the expectation is kept


@given(x=tensors(), p=st.floats(0.05, 0.95), seed=st.integers(0, 2**32 - 1))
def test_gradient_is_the_mask(backend, x, p, seed):
    x = backend.put(x)
    fn = lambda t: F.dropout(t, p, generator=np.random.default_rng(seed))  # noqa: E731
    td.gradcheck(fn, [x])
    td.gradgradcheck(fn, [x])
    out = fn(x)
    (g,) = td.grad(out, x, grad_outputs=td.ones_like(out))
    mask = backend.numpy(g)
    assert set(np.unique(mask).tolist()) <= {0.0, 1 / (1 - p)}
    np.testing.assert_allclose(backend.numpy(out), backend.numpy(x) * mask)


def test_mask_comes_from_generator_and_default_generator(backend):
    x = td.ones(100, device=backend.name)

    def dropout(**kw):
        return backend.numpy(F.dropout(x, **kw))

    a = dropout(generator=np.random.default_rng(7))
    b = dropout(generator=np.random.default_rng(7))
    c = dropout(generator=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    td.manual_seed(3)
    d = dropout()
    td.manual_seed(3)
    np.testing.assert_array_equal(d, dropout())
    assert (dropout() != d).any()  # the default generator advanced


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtype_is_kept(backend, dtype):
    x = td.randn(4, 5, dtype=dtype, requires_grad=dtype != "float16", device=backend.name)
    out = F.dropout(x, 0.3)
    assert out.dtype == np.dtype(dtype)
    if x.requires_grad:
        out.sum().backward()
        assert x.grad.dtype == np.dtype(dtype)
