"""The NumPy reference kernels against naive loop implementations written here, on inputs of
every memory layout (contiguous, strided, transposed, reversed) and both float dtypes."""

import itertools
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinydl.backend import kernels
from tinydl.backend.kernels import numpy_ref as K
from tinydl.testing import conv_params

# ----------------------------------------------------------------------------- naive oracles


def out_size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def naive_im2col(x, kh, kw, stride, padding, dilation):
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    cols = np.zeros((c * kh * kw, n * oh * ow), x.dtype)
    for b, ch, i, j, y, z in itertools.product(*map(range, (n, c, kh, kw, oh, ow))):
        r, q = y * sh + i * dh - ph, z * sw + j * dw - pw
        if 0 <= r < h and 0 <= q < w:
            cols[(ch * kh + i) * kw + j, (b * oh + y) * ow + z] = x[b, ch, r, q]
    return cols


def naive_col2im(cols, x_shape, kh, kw, stride, padding, dilation):
    n, c, h, w = x_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    x = np.zeros(x_shape, cols.dtype)
    for b, ch, i, j, y, z in itertools.product(*map(range, (n, c, kh, kw, oh, ow))):
        r, q = y * sh + i * dh - ph, z * sw + j * dw - pw
        if 0 <= r < h and 0 <= q < w:
            x[b, ch, r, q] += cols[(ch * kh + i) * kw + j, (b * oh + y) * ow + z]
    return x


def naive_maxpool(x, kernel, stride, padding):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    out = np.full((n, c, oh, ow), -np.inf, x.dtype)
    arg = np.zeros((n, c, oh, ow), np.int64)
    for b, ch, y, z in itertools.product(*map(range, (n, c, oh, ow))):
        for i, j in itertools.product(range(kh), range(kw)):
            r, q = y * sh + i - ph, z * sw + j - pw
            if 0 <= r < h and 0 <= q < w and x[b, ch, r, q] > out[b, ch, y, z]:  # first wins
                out[b, ch, y, z], arg[b, ch, y, z] = x[b, ch, r, q], i * kw + j
    return out, arg


def naive_maxpool_backward(grad, arg, x_shape, kernel, stride, padding):
    dx = np.zeros(x_shape, grad.dtype)
    kw = kernel[1]
    for b, ch, y, z in np.ndindex(*grad.shape):
        i, j = divmod(int(arg[b, ch, y, z]), kw)
        r, q = y * stride[0] + i - padding[0], z * stride[1] + j - padding[1]
        if 0 <= r < x_shape[2] and 0 <= q < x_shape[3]:
            dx[b, ch, r, q] += grad[b, ch, y, z]
    return dx


# ----------------------------------------------------------------------------- layouts


@st.composite
def arrays_any_layout(draw, shape, dtype=None):
    """An array of ``shape`` with the same values in one of several memory layouts."""
    dtype = dtype or draw(st.sampled_from([np.float32, np.float64]))
    elements = st.floats(-3, 3, allow_nan=False, width=32)
    a = draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    layout = draw(st.sampled_from(["c", "strided", "transposed", "reversed", "fortran"]))
    if layout == "strided":  # every other element of a wider buffer
        wide = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
        wide[..., ::2] = a
        out = wide[..., ::2]
    elif layout == "transposed":  # stored with the last two axes swapped
        out = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    elif layout == "reversed":  # negative strides
        out = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    elif layout == "fortran":
        out = np.asfortranarray(a)
    else:
        out = a
    np.testing.assert_array_equal(out, a)
    return out


# ----------------------------------------------------------------------------- im2col / col2im


@given(params=conv_params(), data=st.data())
def test_im2col_matches_naive_loops(params, data):
    x = data.draw(arrays_any_layout(params["x_shape"]))
    kh, kw = params["w_shape"][2:]
    args = (params["stride"], params["padding"], params["dilation"])
    cols = K.im2col(x, kh, kw, *args)
    np.testing.assert_array_equal(cols, naive_im2col(x, kh, kw, *args))
    assert cols.dtype == x.dtype and cols.flags.c_contiguous
    assert not np.shares_memory(cols, x)  # a new array even when a view would do (1x1 kernel)


@given(params=conv_params(), data=st.data())
def test_col2im_matches_naive_loops_and_is_the_adjoint(params, data):
    x_shape = params["x_shape"]
    kh, kw = params["w_shape"][2:]
    args = (params["stride"], params["padding"], params["dilation"])
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    cols_shape = naive_im2col(np.zeros(x_shape), kh, kw, *args).shape
    cols = data.draw(arrays_any_layout(cols_shape, dtype))
    x = K.col2im(cols, x_shape, kh, kw, *args)
    expected = naive_col2im(cols, x_shape, kh, kw, *args)
    np.testing.assert_allclose(x, expected, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert x.dtype == dtype and x.shape == x_shape
    # <im2col(y), cols> == <y, col2im(cols)>: col2im is the transpose of im2col
    y = np.random.default_rng(0).standard_normal(x_shape)
    lhs = np.sum(K.im2col(y, kh, kw, *args) * cols)
    np.testing.assert_allclose(lhs, np.sum(y * x), rtol=1e-5, atol=1e-9)


def test_im2col_accepts_ints_and_leaves_input_unchanged():
    x = np.arange(2 * 3 * 5 * 4, dtype=np.float64).reshape(2, 3, 5, 4)
    before = x.copy()
    cols = K.im2col(x, 3, 2, 2, 1, 1)
    np.testing.assert_array_equal(cols, naive_im2col(x, 3, 2, (2, 2), (1, 1), (1, 1)))
    np.testing.assert_array_equal(x, before)


def test_kernels_refuse_a_window_that_does_not_fit():
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"kernel \(5, 5\).*does not fit .*\(1, 1, 3, 3\)"):
        K.im2col(x, 5, 5, 1, 0, 1)
    with pytest.raises(ValueError, match="does not fit"):
        K.col2im(np.zeros((9, 1)), x.shape, 3, 3, 1, 0, 2)
    with pytest.raises(ValueError, match="does not fit"):
        K.maxpool2d_forward(x, 4, 1, 0)


# ----------------------------------------------------------------------------- max pooling


@st.composite
def pool_params(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), 7))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return shape, (kh, kw), stride, padding


@given(params=pool_params(), data=st.data())
def test_maxpool_forward_and_backward_match_naive_loops(params, data):
    shape, kernel, stride, padding = params
    x = data.draw(arrays_any_layout(shape))  # hypothesis makes ties often: first one wins
    out, arg = K.maxpool2d_forward(x, kernel, stride, padding)
    ref_out, ref_arg = naive_maxpool(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
    assert out.dtype == x.dtype and arg.dtype == np.int64
    grad = data.draw(arrays_any_layout(out.shape, x.dtype))
    dx = K.maxpool2d_backward(grad, arg, shape, kernel, stride, padding)
    expected = naive_maxpool_backward(grad, ref_arg, shape, kernel, stride, padding)
    np.testing.assert_allclose(dx, expected, rtol=1e-6)
    assert dx.dtype == x.dtype and dx.shape == shape


def test_maxpool_nan_propagates_and_ties_pick_the_first():
    x = np.array([[[[1.0, 1.0, 0.0, np.nan], [1.0, 0.0, 2.0, 5.0]]]])
    out, arg = K.maxpool2d_forward(x, 2, 2, 0)
    np.testing.assert_array_equal(out, [[[[1.0, np.nan]]]])
    np.testing.assert_array_equal(arg, [[[[0, 1]]]])


def test_maxpool_pads_with_minus_infinity():
    x = -np.ones((1, 1, 2, 2), np.float32)
    out, _ = K.maxpool2d_forward(x, 2, 1, 1)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 3, 3)))


def test_maxpool_integer_input():
    x = np.array([[[[-5, -7], [-9, -6]]]], np.int64)
    out, arg = K.maxpool2d_forward(x, 2, 1, 1)
    assert out.dtype == np.int64 and out.max() == -5 and arg[0, 0, 0, 0] == 3


# ----------------------------------------------------------------------------- registry


def test_registry_holds_the_reference_kernels():
    assert set(kernels.KERNELS["numpy"]) == set(kernels.OPS)
    for op in kernels.OPS:
        assert kernels.get_kernel(op, "numpy") is getattr(K, op)
    with pytest.raises(ValueError, match="unknown kernel variant 'fpga'"):
        kernels.get_kernel("im2col", "fpga")
    with pytest.raises(ValueError, match="unknown op 'conv'"):
        kernels.get_kernel("conv")


def test_register_kernels_needs_every_op():
    with pytest.raises(ValueError, match=r"'half' lacks \['col2im'"):
        kernels.register_kernels("half", {"im2col": K.im2col})
    assert "half" not in kernels.KERNELS
    try:
        kernels.register_kernels("copy", dict(kernels.KERNELS["numpy"]))
        assert kernels.get_kernel("col2im", "copy") is K.col2im
    finally:
        kernels.KERNELS.pop("copy", None)


# ----------------------------------------------------------------------------- batch norm


def test_batchnorm_reference_against_float64_formulas():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 4, 2)) * 3 + 10
    w, b, g = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(x.shape)
    y, xhat, mean, var = K.batchnorm_forward(x, w, b, 1e-5)
    axes = (0, 2, 3)
    np.testing.assert_allclose(mean, x.mean(axes), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axes), rtol=1e-12)
    expect_hat = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(xhat, expect_hat, rtol=1e-10)
    np.testing.assert_allclose(y, expect_hat * w.reshape(3, 1, 1) + b.reshape(3, 1, 1), rtol=1e-10)
    # backward against central differences of sum(g * y)
    dx, dw, db = K.batchnorm_backward(g, xhat, w, 1 / np.sqrt(var + 1e-5))
    np.testing.assert_allclose(db, g.sum(axes), rtol=1e-12)
    np.testing.assert_allclose(dw, (g * xhat).sum(axes), rtol=1e-12)
    eps, idx = 1e-6, (2, 1, 3, 0)
    xp, xm = x.copy(), x.copy()
    xp[idx] += eps
    xm[idx] -= eps
    numeric = (
        np.sum(g * K.batchnorm_forward(xp, w, b, 1e-5)[0])
        - np.sum(g * K.batchnorm_forward(xm, w, b, 1e-5)[0])
    ) / (2 * eps)
    np.testing.assert_allclose(dx[idx], numeric, rtol=1e-6)


def test_the_kernel_ops_are_named_once():
    """Every variant takes its list of ops from the reference's ``OPS``."""
    src = pathlib.Path(kernels.__file__).parent
    for path in src.glob("*.py"):
        text = path.read_text()
        assert text.count('"maxpool2d_backward",') <= (1 if path.name == "numpy_ref.py" else 0), path


def test_kernel_switch_and_budget_are_local_to_a_thread():
    seen = {}

    def other():
        seen["kernels"], seen["budget"] = kernels.active_kernels(), kernels.get_im2col_budget()

    before = kernels.active_kernels(), kernels.get_im2col_budget()
    with kernels.use_kernels("numpy"), kernels.im2col_budget(1234) as old:
        assert old == before[1]
        assert (kernels.active_kernels(), kernels.get_im2col_budget()) == ("numpy", 1234)
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == {"kernels": kernels._DEFAULT_VARIANT, "budget": 256 * 2**20}
    assert (kernels.active_kernels(), kernels.get_im2col_budget()) == before
    with pytest.raises(ValueError, match="im2col_budget: nbytes must be a positive int"):
        kernels.im2col_budget(0)
