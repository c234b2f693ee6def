"""The Numba kernels against the NumPy reference (bit for bit where no sum is reordered), on
hypothesis-generated shapes, strides, paddings and dilations, every memory layout, float32 and
float64; and the kernel switch (``use_kernels``, ``TINYDL_KERNELS``).

CI runs this file a second time with ``NUMBA_DISABLE_JIT=1`` so the kernels' Python bodies are
executed (and covered) as plain Python."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
from tests.backend.test_kernels_numpy import arrays_any_layout, pool_params
from tinydl.backend import kernels
from tinydl.backend.kernels import numpy_ref as R
from tinydl.testing import conv_params

B = pytest.importorskip("tinydl.backend.kernels.numba_cpu", reason="Numba is not importable")


def _conv_args(params):
    kh, kw = params["w_shape"][2:]
    return kh, kw, params["stride"], params["padding"], params["dilation"]


@given(params=conv_params(), data=st.data())
def test_im2col_equals_the_reference(params, data):
    x = data.draw(arrays_any_layout(params["x_shape"]))
    cols = B.im2col(x, *_conv_args(params))
    np.testing.assert_array_equal(cols, R.im2col(x, *_conv_args(params)))  # a copy: exact
    assert cols.dtype == x.dtype and cols.flags.c_contiguous and not np.shares_memory(cols, x)


@given(params=conv_params(), data=st.data())
def test_col2im_equals_the_reference(params, data):
    x_shape = params["x_shape"]
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    cols_shape = R.im2col(np.zeros(x_shape), *_conv_args(params)).shape
    cols = data.draw(arrays_any_layout(cols_shape, dtype))
    x = B.col2im(cols, x_shape, *_conv_args(params))
    tol = 1e-6 if dtype == np.float32 else 1e-13  # overlapping windows add in another order
    np.testing.assert_allclose(x, R.col2im(cols, x_shape, *_conv_args(params)), rtol=tol, atol=tol)
    assert x.dtype == dtype and x.shape == x_shape and x.flags.c_contiguous


@given(params=pool_params(), data=st.data())
def test_maxpool_equals_the_reference(params, data):
    shape, kernel, stride, padding = params
    x = data.draw(arrays_any_layout(shape))
    if data.draw(st.booleans()):  # NaNs and infinities, placed anywhere
        flat = x.reshape(-1) if x.flags.c_contiguous else None
        if flat is not None:
            idx = data.draw(st.lists(st.integers(0, flat.size - 1), max_size=3))
            flat[idx] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    out, arg = B.maxpool2d_forward(x, kernel, stride, padding)
    ref_out, ref_arg = R.maxpool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
    assert out.dtype == x.dtype and arg.dtype == np.int64
    grad = data.draw(arrays_any_layout(out.shape, x.dtype))
    dx = B.maxpool2d_backward(grad, arg, shape, kernel, stride, padding)
    np.testing.assert_allclose(
        dx, R.maxpool2d_backward(grad, arg, shape, kernel, stride, padding), rtol=1e-6
    )
    assert dx.dtype == x.dtype and dx.shape == shape


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9)),
    data=st.data(),
)
def test_maxpool_2x2_fast_paths_equal_the_reference(shape, data):
    # 2x2 windows, stride 2, no padding: the unrolled forward and the shift-indexed backward;
    # odd sizes leave a last row/column outside every window (its gradient is zero)
    x = np.array(data.draw(arrays_any_layout(shape)))
    flat = x.reshape(-1)
    for i in data.draw(st.lists(st.integers(0, flat.size - 1), max_size=3)):
        flat[i] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    out, arg = B.maxpool2d_forward(x, 2, 2, 0)
    ref_out, ref_arg = R.maxpool2d_forward(x, 2, 2, 0)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
    grad = data.draw(arrays_any_layout(out.shape, x.dtype))
    dx = B.maxpool2d_backward(grad, arg, shape, 2, 2, 0)
    np.testing.assert_array_equal(dx, R.maxpool2d_backward(grad, arg, shape, 2, 2, 0))  # exact
    assert dx.dtype == x.dtype and dx.shape == shape and dx.flags.c_contiguous


def test_maxpool_all_minus_infinity_window_matches_the_reference():
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)
    for padding in (0, 1):
        out, arg = B.maxpool2d_forward(x, 2, 1, padding)
        ref_out, ref_arg = R.maxpool2d_forward(x, 2, 1, padding)
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(arg, ref_arg)
        g = np.ones_like(out)
        np.testing.assert_array_equal(
            B.maxpool2d_backward(g, arg, x.shape, 2, 1, padding),
            R.maxpool2d_backward(g, arg, x.shape, 2, 1, padding),
        )


def test_integer_maxpool_goes_to_the_reference():
    x = np.array([[[[-5, -7], [-9, -6]]]], np.int64)
    out, arg = B.maxpool2d_forward(x, 2, 1, 1)
    assert out.dtype == np.int64 and out.max() == -5 and arg[0, 0, 0, 0] == 3


def test_numba_kernels_refuse_a_window_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        B.im2col(np.zeros((1, 1, 3, 3)), 5, 5, 1, 0, 1)


# ----------------------------------------------------------------------------- the switch


def test_numba_is_the_default_and_use_kernels_switches():
    assert "numba" in kernels.available_kernels()
    default = kernels.active_kernels()
    assert kernels.get_kernel("im2col") is kernels.KERNELS[default]["im2col"]
    with kernels.use_kernels("numpy"):
        assert kernels.active_kernels() == "numpy"
        assert kernels.get_kernel("im2col", like=np.zeros(1)) is R.im2col
    assert kernels.active_kernels() == default
    kernels.use_kernels("numpy")  # also a plain call
    try:
        assert kernels.get_kernel("col2im") is R.col2im
    finally:
        kernels.use_kernels(default)
    with pytest.raises(ValueError, match="unknown CPU kernels 'cuda'"):
        kernels.use_kernels("cuda")
    assert td.backend.use_kernels is kernels.use_kernels


def test_a_training_step_is_the_same_with_either_kernels():
    from tinydl.layers.models import LeNet5

    def step():
        td.manual_seed(0)
        model = LeNet5()
        x = td.randn(4, 1, 28, 28)
        loss = td.functional.cross_entropy(model(x), td.tensor([1, 2, 3, 4]))
        loss.backward()
        return loss.item(), [p.grad.data for p in model.parameters()]

    with kernels.use_kernels("numba"):
        loss_b, grads_b = step()
    with kernels.use_kernels("numpy"):
        loss_r, grads_r = step()
    assert loss_b == pytest.approx(loss_r, rel=1e-6)
    for a, b in zip(grads_b, grads_r):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("value", "expected", "warns"),
    [
        ("numpy", "numpy", False),
        ("numba", "numba", False),
        ("fpga", "numba", True),
    ],
)
def test_tinydl_kernels_environment_variable(value, expected, warns):
    code = (
        "import warnings; warnings.simplefilter('always');"
        "import tinydl.backend.kernels as k; print(k.active_kernels())"
    )
    env = dict(os.environ, TINYDL_KERNELS=value)
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected
    assert ("TINYDL_KERNELS='fpga' is not one of" in run.stderr) == warns


# ----------------------------------------------------------------------------- batch norm


@st.composite
def bn_inputs(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4))) + tuple(
        draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    )
    if shape[0] * int(np.prod(shape[2:])) < 2:
        shape = (2,) + shape[1:]
    x = draw(arrays_any_layout(shape, dtype)) * draw(st.sampled_from([1, 100]))
    x = x + draw(st.sampled_from([0, 1000]))  # a large mean tests the two-pass variance
    c = shape[1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    affine = draw(st.booleans())
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    g = rng.standard_normal(shape).astype(dtype)
    return x, w, b, g


def _bn_forward_bounds(x, w, b, eps):
    """Float64 oracle of the batch-norm forward and, per output, a bound on the rounding error
    of any correct kernel in ``x.dtype``: sums of ``m`` terms err by at most ``gamma * sum|t|``
    (Higham's gamma_m), and the error of ``mean`` reaches ``x - mean``, ``var`` and ``xhat``.
    A fixed tolerance cannot do this: ``x = 1000 + noise`` loses digits in ``x - mean``."""
    u = np.finfo(x.dtype).eps
    x3 = x.astype(np.float64).reshape(x.shape[0], x.shape[1], -1)
    m = x3.shape[0] * x3.shape[2]
    gamma = (m + 4) * u
    red = dict(axis=(0, 2), keepdims=True)
    mean = x3.mean(**red)
    d = x3 - mean
    var = (d * d).mean(**red)
    inv = 1 / np.sqrt(var + eps)
    xhat = d * inv
    e_mean = gamma * np.abs(x3).mean(**red)
    e_d = u * np.abs(d) + e_mean
    e_var = gamma * var + 2 * (np.abs(d) * e_d).mean(**red) + e_d.max(**red) ** 2
    e_xhat = e_d * inv + np.abs(xhat) * (e_var / (var + eps) + 4 * u)
    w3 = np.ones((1, x.shape[1], 1)) if w is None else w.astype(np.float64).reshape(1, -1, 1)
    b3 = np.zeros((1, x.shape[1], 1)) if b is None else b.astype(np.float64).reshape(1, -1, 1)
    y = xhat * w3 + b3
    e_y = np.abs(w3) * e_xhat + 2 * u * (np.abs(xhat * w3) + np.abs(b3))
    shapes = (x.shape, x.shape, (-1,), (-1,))
    oracle = [a.reshape(s) for a, s in zip((y, xhat, mean, var), shapes)]
    bounds = [np.broadcast_to(e, a.shape).reshape(s) for e, a, s in
              zip((e_y, e_xhat, e_mean, e_var), (y, xhat, mean, var), shapes)]
    return oracle, bounds


def _bn_backward_bounds(g, xhat, w, inv_std):
    """Float64 oracle of the batch-norm backward from the same (rounded) inputs, and bounds on
    the rounding error of ``(dx, dweight, dbias)`` in ``g.dtype``, as above."""
    u = np.finfo(g.dtype).eps
    g3 = g.astype(np.float64).reshape(g.shape[0], g.shape[1], -1)
    h3 = xhat.astype(np.float64).reshape(g3.shape)
    m = g3.shape[0] * g3.shape[2]
    gamma = (m + 4) * u
    scale = inv_std.astype(np.float64) * (1 if w is None else w.astype(np.float64))
    scale = scale.reshape(1, -1, 1)
    dbias, dweight = g3.sum(axis=(0, 2)), (g3 * h3).sum(axis=(0, 2))
    mb, mw = (dbias / m).reshape(1, -1, 1), (dweight / m).reshape(1, -1, 1)
    inner = g3 - mb - h3 * mw
    e_dbias = gamma * np.abs(g3).sum(axis=(0, 2))
    e_dweight = gamma * np.abs(g3 * h3).sum(axis=(0, 2))
    e_inner = 4 * u * (np.abs(g3) + np.abs(mb) + np.abs(h3 * mw)) + (
        e_dbias.reshape(1, -1, 1) + np.abs(h3) * e_dweight.reshape(1, -1, 1)
    ) / m
    e_dx = np.abs(scale) * (e_inner + 4 * u * np.abs(inner))
    oracle = [(inner * scale).reshape(g.shape), dweight, dbias]
    bounds = [e_dx.reshape(g.shape), e_dweight, e_dbias]
    return oracle, bounds


def _within(got, oracle, bound, what):
    err = np.abs(got.astype(np.float64) - oracle)
    limit = 4 * bound + np.finfo(got.dtype).tiny
    worst = np.unravel_index(np.argmax(err - limit), err.shape) if err.size else ()
    assert np.all(err <= limit), (
        f"{what}: error {err[worst]:.3g} at {worst} over the rounding bound {limit[worst]:.3g}"
    )


@given(bn_inputs())
def test_batchnorm_equals_the_reference(inputs):
    """Both kernels (Numba, float64 accumulators; the reference, sums in the input dtype) stay
    within the rounding bound of a float64 oracle, whatever the input's conditioning."""
    x, w, b, g = inputs
    oracle, bounds = _bn_forward_bounds(x, w, b, 1e-5)
    ref = R.batchnorm_forward(x, w, b, 1e-5)
    for kernel, out in (("numba", B.batchnorm_forward(x, w, b, 1e-5)), ("numpy", ref)):
        for name, a, o, e in zip(("y", "xhat", "mean", "var"), out, oracle, bounds):
            assert a.dtype == x.dtype and a.shape == o.shape
            _within(a, o, e, f"{kernel} batchnorm_forward {name}")
    inv_std = 1 / np.sqrt(ref[3] + 1e-5)
    oracle, bounds = _bn_backward_bounds(g, ref[1], w, inv_std)
    for kernel in (B, R):
        out = kernel.batchnorm_backward(g, ref[1], w, inv_std)
        for name, a, o, e in zip(("dx", "dweight", "dbias"), out, oracle, bounds):
            assert a.dtype == x.dtype and a.shape == o.shape
            _within(a, o, e, f"{kernel.__name__} batchnorm_backward {name}")


def test_batchnorm_bound_is_tight_enough_to_catch_a_float32_mean_bug():
    """The rounding bound must not hide real bugs: a variance off by one part in 1e3 fails."""
    x = np.random.default_rng(0).standard_normal((8, 3, 4, 4)).astype(np.float32)
    oracle, bounds = _bn_forward_bounds(x, None, None, 1e-5)
    y, xhat, mean, var = R.batchnorm_forward(x, None, None, 1e-5)
    _within(var, oracle[3], bounds[3], "var")
    with pytest.raises(AssertionError, match="rounding bound"):
        _within(var * np.float32(1.001), oracle[3], bounds[3], "var")
    with pytest.raises(AssertionError, match="rounding bound"):
        _within(xhat * np.float32(1.001), oracle[1], bounds[1], "xhat")


def test_batchnorm_of_a_large_mean_batch_found_by_hypothesis():
    """The draw that broke the fixed 2e-4 tolerance (hypothesis 6.170): x ~ 1000 + small."""
    x = np.array([[1002.1906, 1000.0], [1002.0, 1000.0]], np.float32)
    test_batchnorm_equals_the_reference.hypothesis.inner_test((x, None, None, np.ones_like(x)))


def test_batchnorm_of_a_constant_batch_is_the_bias():
    x = np.full((4, 3, 2, 2), 7.25, np.float32)
    b = np.array([1.0, -2.0, 0.5], np.float32)
    for k in (B, R):
        y, xhat, mean, var = k.batchnorm_forward(x, np.ones(3, np.float32), b, 1e-5)
        np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), x.shape))
        np.testing.assert_array_equal(var, 0)


def test_without_numba_the_reference_kernels_run_with_a_warning():
    code = (
        "import sys, warnings; sys.modules['numba'] = None; warnings.simplefilter('always');"
        "import tinydl as td, tinydl.functional as F;"
        "y = F.max_pool2d(td.randn(1, 1, 4, 4), 2);"
        "print(td.backend.active_kernels(), td.info()['kernels'])"
    )
    env = dict(os.environ, TINYDL_KERNELS="numba")
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("numpy numpy")
    assert "numba unusable" in run.stdout and "running the NumPy reference" in run.stderr


@given(data=st.data())
def test_maxpool_2x2_fast_path_equals_the_reference(data):
    shape = (
        data.draw(st.integers(1, 2)),
        data.draw(st.integers(1, 3)),
        2 * data.draw(st.integers(1, 4)) + data.draw(st.integers(0, 1)),
        2 * data.draw(st.integers(1, 4)) + data.draw(st.integers(0, 1)),
    )
    x = np.ascontiguousarray(data.draw(arrays_any_layout(shape)))
    specials = data.draw(
        st.lists(
            st.tuples(st.integers(0, x.size - 1), st.sampled_from([np.nan, np.inf, -np.inf, 0.0])),
            max_size=4,
        )
    )
    for i, v in specials:
        x.reshape(-1)[i] = v
    out, arg = B.maxpool2d_forward(x, 2, 2, 0)
    ref_out, ref_arg = R.maxpool2d_forward(x, 2, 2, 0)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
