"""The per-image column kernels (``numba_conv_images``) against their NumPy reference
(``conv_images_ref``), which is checked against naive loops; and ``conv2d`` through them
against ``conv2d`` on the reference kernels (the ``(K, N*OH*OW)`` path)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.backend.test_kernels_numpy import arrays_any_layout, naive_col2im, naive_im2col
from tinydl.backend import kernels
from tinydl.backend.kernels import conv_images_ref as R
from tinydl.functional import _conv_images as conv_images
from tinydl.testing import conv_params

B = pytest.importorskip(
    "tinydl.backend.kernels.numba_conv_images", reason="Numba is not importable"
)


def _args(params):
    kh, kw = params["w_shape"][2:]
    return kh, kw, params["stride"], params["padding"], params["dilation"]


def _with_specials(data, x):
    """``x`` with up to three NaNs or infinities at drawn places (a copy: a kernel must copy
    them through as they are)."""
    x = np.array(x)
    flat = x.reshape(-1)
    for i in data.draw(st.lists(st.integers(0, flat.size - 1), max_size=3)):
        flat[i] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x


@given(params=conv_params(groups=False), ones=st.booleans())
def test_reference_is_the_naive_layout_per_image(params, ones):
    x = np.random.default_rng(0).standard_normal(params["x_shape"])
    n = x.shape[0]
    naive = naive_im2col(x, *_args(params))  # (K, N*OH*OW)
    cols = R.im2col_images(x, *_args(params), ones=ones)
    expected = naive.reshape(naive.shape[0], n, -1).transpose(1, 0, 2)
    np.testing.assert_array_equal(cols[:, : naive.shape[0]], expected)
    assert cols.shape[1] == naive.shape[0] + ones and (cols[:, naive.shape[0] :] == 1).all()
    back = R.col2im_images(cols, x.shape, *_args(params))
    flat = np.ascontiguousarray(expected.transpose(1, 0, 2)).reshape(naive.shape)
    np.testing.assert_allclose(back, naive_col2im(flat, x.shape, *_args(params)), rtol=1e-12)


@given(params=conv_params(groups=False), ones=st.booleans(), data=st.data())
def test_im2col_images_equals_the_reference(params, ones, data):
    x = data.draw(arrays_any_layout(params["x_shape"]))
    if data.draw(st.booleans()):
        x = _with_specials(data, x)
    cols = B.im2col_images(x, *_args(params), ones=ones)
    np.testing.assert_array_equal(cols, R.im2col_images(x, *_args(params), ones=ones))  # exact
    assert cols.dtype == x.dtype and cols.flags.c_contiguous and not np.shares_memory(cols, x)


@given(params=conv_params(groups=False), ones=st.booleans(), data=st.data())
def test_col2im_images_equals_the_reference(params, ones, data):
    x_shape = params["x_shape"]
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    cols_shape = R.im2col_images(np.zeros(x_shape), *_args(params), ones=ones).shape
    cols = data.draw(arrays_any_layout(cols_shape, dtype))
    if data.draw(st.booleans()):
        cols = _with_specials(data, cols)
    x = B.col2im_images(cols, x_shape, *_args(params))
    tol = 1e-6 if dtype == np.float32 else 1e-13  # overlapping windows add in another order
    expected = R.col2im_images(cols, x_shape, *_args(params))
    np.testing.assert_allclose(x, expected, rtol=tol, atol=tol, equal_nan=True)
    assert x.dtype == dtype and x.shape == x_shape and x.flags.c_contiguous


def _conv_and_grads(x, w, b, params, g, variant, create_graph=False):
    with td.backend.use_kernels(variant):
        ts = [td.tensor(a, requires_grad=True) for a in (x, w) + ((b,) if b is not None else ())]
        y = F.conv2d(
            *ts[:2],
            ts[2] if b is not None else None,
            params["stride"],
            params["padding"],
            params["dilation"],
        )
        grads = td.grad(y, ts, td.tensor(g), create_graph=create_graph)
    return [y.data, *(t.data for t in grads)]


@pytest.mark.parametrize("threads", [1, 2])
@given(params=conv_params(groups=False, max_batch=5), bias=st.booleans(), data=st.data())
def test_conv2d_on_the_image_path_equals_the_reference_path(params, bias, data, threads):
    pytest.importorskip("tinydl.backend.kernels.numba_cpu", reason="Numba is not importable")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x, w, b = (
        rng.standard_normal(s).astype(dtype)
        for s in (params["x_shape"], params["w_shape"], params["w_shape"][:1])
    )
    y = F.conv2d(
        td.tensor(x), td.tensor(w), None, params["stride"], params["padding"], params["dilation"]
    )
    g = rng.standard_normal(y.shape).astype(dtype)
    old_threads = td.backend.threads.get_num_threads()
    old, conv_images._MIN_PIXELS = conv_images._MIN_PIXELS, 0  # every shape on the new path
    td.backend.threads.set_num_threads(threads)
    try:
        ref = _conv_and_grads(x, w, b if bias else None, params, g, "numpy")
        got = _conv_and_grads(x, w, b if bias else None, params, g, "numba")
        with kernels.im2col_budget(x[0].size * 9 * 4 * 8):  # chunks of about one image
            chunked = _conv_and_grads(x, w, b if bias else None, params, g, "numba")
        graph = _conv_and_grads(x, w, b if bias else None, params, g, "numba", create_graph=True)
    finally:
        conv_images._MIN_PIXELS = old
        td.backend.threads.set_num_threads(old_threads)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for a, r, c, d in zip(got, ref, chunked, graph):
        assert a.dtype == r.dtype and a.shape == r.shape
        for other in (a, c, d):
            np.testing.assert_allclose(other, r, rtol=tol, atol=tol)


def test_conv2d_takes_the_image_path_for_large_outputs_only(monkeypatch):
    pytest.importorskip("tinydl.backend.kernels.numba_cpu", reason="Numba is not importable")
    calls = []
    inner = B.im2col_images
    monkeypatch.setattr(B, "im2col_images", lambda x, *a, **k: calls.append(1) or inner(x, *a, **k))
    w = td.randn(4, 2, 3, 3)
    with td.backend.use_kernels("numba"):
        F.conv2d(td.randn(2, 2, 18, 18), w)  # 16x16 outputs: the image path
        assert calls
        calls.clear()
        F.conv2d(td.randn(2, 2, 12, 12), w)  # 10x10
        F.conv2d(td.randn(2, 4, 18, 18), w, groups=2)  # groups
        assert not calls
    with td.backend.use_kernels("numpy"):
        F.conv2d(td.randn(2, 2, 18, 18), w)
        assert not calls
