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
from test_kernels_numpy import arrays_any_layout, pool_params

import tinydl as td
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


@given(bn_inputs())
def test_batchnorm_equals_the_reference(inputs):
    x, w, b, g = inputs
    tol = dict(rtol=2e-4, atol=2e-4) if x.dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    got, ref = B.batchnorm_forward(x, w, b, 1e-5), R.batchnorm_forward(x, w, b, 1e-5)
    for a, e in zip(got, ref):  # y, xhat, mean, var
        assert a.dtype == x.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, **tol)
    inv_std = 1 / np.sqrt(ref[3] + 1e-5)
    got_b = B.batchnorm_backward(g, ref[1], w, inv_std)
    ref_b = R.batchnorm_backward(g, ref[1], w, inv_std)
    for a, e in zip(got_b, ref_b):  # dx, dweight, dbias
        assert a.dtype == x.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, **tol)


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
