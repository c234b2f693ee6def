"""The fused batch-norm + ReLU kernels (Numba and the NumPy reference) against the float64
oracle of ``test_kernels_numba``: the forward is ``max(y, 0)`` of the batch-norm oracle, the
backward the batch-norm backward of the masked gradient, within the same rounding bounds."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.backend.test_kernels_numba import (
    _bn_backward_bounds,
    _bn_forward_bounds,
    _within,
    bn_inputs,
)
from tinydl.backend.kernels import numpy_ref as R

B = pytest.importorskip("tinydl.backend.kernels.numba_cpu", reason="Numba is not importable")


@given(bn_inputs())
def test_batchnorm_relu_equals_the_oracle(inputs):
    x, w, b, g = inputs
    (y, _, mean, var), (e_y, _, e_mean, e_var) = _bn_forward_bounds(x, w, b, 1e-5)
    for kernel in (B, R):
        out = kernel.batchnorm_relu_forward(x, w, b, 1e-5)
        for name, a, o, e in zip(("y", "mean", "var"), out, (np.maximum(y, 0), mean, var),
                                 (e_y, e_mean, e_var)):  # fmt: skip
            assert a.dtype == x.dtype and a.shape == o.shape
            _within(a, o, e, f"{kernel.__name__} batchnorm_relu_forward {name}")
    y, mean, var = R.batchnorm_relu_forward(x, w, b, 1e-5)
    inv_std = (1 / np.sqrt(var + 1e-5)).astype(x.dtype)
    c3 = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - mean.reshape(c3)) * inv_std.reshape(c3)  # as both kernels recompute it
    oracle, bounds = _bn_backward_bounds(g * (y > 0), xhat, w, inv_std)
    for kernel in (B, R):
        out = kernel.batchnorm_relu_backward(g, x, y, w, mean, inv_std)
        for name, a, o, e in zip(("dx", "dweight", "dbias"), out, oracle, bounds):
            assert a.dtype == x.dtype and a.shape == o.shape
            _within(a, o, e, f"{kernel.__name__} batchnorm_relu_backward {name}")


@pytest.mark.parametrize("kernel", [B, R], ids=["numba", "numpy"])
def test_nan_and_inf_follow_relu(kernel):
    """A NaN output passes the gradient (as ReLU's ``~(y <= 0)``), and an inf gradient under a
    zero output is NaN (ReLU's backward multiplies by the mask): the whole channel's sums see
    it, as batch norm's backward of ReLU's gradient would."""
    x = np.array([[-1.0, 2.0], [1.0, 3.0], [0.5, 2.5]], np.float32)
    w, b = np.ones(2, np.float32), np.zeros(2, np.float32)
    y, mean, var = kernel.batchnorm_relu_forward(x, w, b, 1e-5)
    assert y[0, 0] == 0 and y[1, 0] > 0
    inv = (1 / np.sqrt(var + 1e-5)).astype(np.float32)
    g = np.array([[np.inf, 1.0], [1.0, 1.0], [1.0, 1.0]], np.float32)
    dx, dw, db = kernel.batchnorm_relu_backward(g, x, y, w, mean, inv)
    assert np.isnan(dx[:, 0]).all() and np.isnan(dw[0]) and np.isfinite(dx[:, 1]).all()
    xn = x.copy()
    xn[0, 1] = np.nan
    y, mean, var = kernel.batchnorm_relu_forward(xn, w, b, 1e-5)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, 0]).all()


@given(bn_inputs(), st.integers(0, 2**32 - 1))
def test_batchnorm_add_relu_equals_the_oracle(inputs, seed):
    """``relu(batch_norm(x) + residual)``: the oracle's ``y`` plus the residual (one more
    rounding), and the backward is ``batchnorm_relu``'s with the masked gradient returned as
    the residual's, exactly ``grad * (y > 0)``."""
    x, w, b, g = inputs
    r = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    (y, _, mean, var), (e_y, _, e_mean, e_var) = _bn_forward_bounds(x, w, b, 1e-5)
    z = y + r
    e_z = e_y + np.finfo(x.dtype).eps * (np.abs(y) + np.abs(r))
    for kernel in (B, R):
        out = kernel.batchnorm_add_relu_forward(x, r, w, b, 1e-5)
        for name, a, o, e in zip(("y", "mean", "var"), out, (np.maximum(z, 0), mean, var),
                                 (e_z, e_mean, e_var)):  # fmt: skip
            assert a.dtype == x.dtype and a.shape == o.shape
            _within(a, o, e, f"{kernel.__name__} batchnorm_add_relu_forward {name}")
    y, mean, var = R.batchnorm_add_relu_forward(x, r, w, b, 1e-5)
    inv_std = (1 / np.sqrt(var + 1e-5)).astype(x.dtype)
    c3 = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - mean.reshape(c3)) * inv_std.reshape(c3)
    oracle, bounds = _bn_backward_bounds(g * (y > 0), xhat, w, inv_std)
    for kernel in (B, R):
        *out, dres = kernel.batchnorm_add_relu_backward(g, x, y, w, mean, inv_std)
        for name, a, o, e in zip(("dx", "dweight", "dbias"), out, oracle, bounds):
            assert a.dtype == x.dtype and a.shape == o.shape
            _within(a, o, e, f"{kernel.__name__} batchnorm_add_relu_backward {name}")
        assert dres.dtype == x.dtype
        np.testing.assert_array_equal(dres, g * (y > 0))


@pytest.mark.parametrize("kernel", [B, R], ids=["numba", "numpy"])
def test_a_nan_residual_gives_nan_and_passes_its_gradient(kernel):
    x = np.array([[-1.0, 2.0], [1.0, 3.0], [0.5, 2.5]], np.float32)
    w, b = np.ones(2, np.float32), np.zeros(2, np.float32)
    r = np.zeros_like(x)
    r[1, 0] = np.nan
    y, mean, var = kernel.batchnorm_add_relu_forward(x, r, w, b, 1e-5)
    assert np.isnan(y[1, 0]) and np.isfinite(np.delete(y.ravel(), 2)).all()
    inv = (1 / np.sqrt(var + 1e-5)).astype(np.float32)
    g = np.ones_like(x)
    *_, dres = kernel.batchnorm_add_relu_backward(g, x, y, w, mean, inv)
    assert dres[1, 0] == 1  # a NaN output passes the gradient, as ReLU's ~(y <= 0)
