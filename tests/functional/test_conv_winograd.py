"""conv2d's Winograd path (3x3, stride 1, Numba kernels) against the im2col path of the NumPy
reference kernels: the output and every gradient, float64 and float32."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tinydl.backend import kernels
from tinydl.functional import conv as conv_module
from tinydl.functional import conv_winograd

pytest.importorskip("tinydl.backend.kernels.numba_winograd", reason="Numba is not importable")

# float32: measured max |winograd - im2col| / max |im2col| up to 9e-7 on these sizes with
# F(2x2) (the transforms add up to 9 terms before and after the GEMM), a few 1e-6 with F(4x4)
# (its B and A scale by up to 8); float64 about 1e-15. Keyed by (dtype, tile).
TOLERANCE = {np.float64: {2: 1e-10, 4: 1e-10}, np.float32: {2: 1e-5, 4: 3e-5}}


def _run(kernel, x, w, b, padding, dy, create_graph=False):
    """``(y, dx, dW[, db])`` of conv2d under ``kernel`` (``"numba"`` or ``"numpy"``)."""
    with kernels.use_kernels(kernel):
        xt, wt = td.tensor(x, requires_grad=True), td.tensor(w, requires_grad=True)
        bt = None if b is None else td.tensor(b, requires_grad=True)
        y = F.conv2d(xt, wt, bt, padding=padding)
        y.backward(td.tensor(dy))
        grads = [xt.grad, wt.grad] + ([] if b is None else [bt.grad])
        return [y.detach().numpy()] + [g.numpy() for g in grads]


def _compare(got, want, dtype, tile):
    for g, r in zip(got, want, strict=True):
        assert g.dtype == dtype
        scale = max(float(np.abs(r).max()), 1e-30)
        assert float(np.abs(g - r).max()) / scale <= TOLERANCE[dtype][tile]


@st.composite
def conv_cases(draw):
    n, cin, cout = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    h, w, padding = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(0, 2))
    assume(h + 2 * padding >= 3 and w + 2 * padding >= 3)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return (n, cin, cout, h, w), padding, dtype, draw(st.booleans())


def _any_channels(tile=2, pieces=None):
    """Winograd F(tile x tile) for every channel count and size, so that small hypothesis
    shapes take it too; ``pieces``: bytes per piece of a share (1: an image a piece)."""
    extra = {} if pieces is None else {"_PIECE": pieces}
    return mock.patch.multiple(
        conv_winograd, MIN_IN_CHANNELS=1, MAX_WIDENING=float("inf"), MIN_CHANNELS_X_SIDE=1,
        MIN_SIDE=1, MIN_SIDE_F4=1 if tile == 4 else 10**9, **extra,
    )


def _counting():
    return mock.patch.object(conv_module, "winograd_forward", wraps=conv_winograd.winograd_forward)


@pytest.mark.parametrize("tile", [2, 4])
@given(
    case=conv_cases(), threads=st.integers(1, 3), pieces=st.sampled_from([None, 1]),
    seed=st.integers(0, 2**32 - 1),
)
def test_winograd_matches_the_im2col_reference(tile, case, threads, pieces, seed):
    """1-3 worker threads: one share of the batch each, in one piece or an image a piece."""
    (n, cin, cout, h, w), padding, dtype, bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    wt = rng.standard_normal((cout, cin, 3, 3)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    oh, ow = h + 2 * padding - 2, w + 2 * padding - 2
    dy = rng.standard_normal((n, cout, oh, ow)).astype(dtype)
    before = td.get_num_threads()
    td.set_num_threads(threads)
    try:
        with _any_channels(tile, pieces), _counting() as spy:
            got = _run("numba", x, wt, b, padding, dy)
    finally:
        td.set_num_threads(before)
    assert spy.call_count == 1 and spy.call_args.args[-1] == tile
    with _counting() as spy:
        want = _run("numpy", x, wt, b, padding, dy)
    assert spy.call_count == 0
    _compare(got, want, dtype, tile)


@pytest.mark.parametrize("tile, bound", [(2, 2e-6), (4, 1e-5)])
def test_a_mnistcnn_layer_in_float32_stays_near_float64(tile, bound):
    """32 -> 32 channels at 28x28 (the MnistCNN layer), float32 against float64: im2col within
    2e-6 of the largest value, F(2x2) too, F(4x4) within 1e-5 (measured 2-5e-6)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 28, 28))
    w = rng.standard_normal((32, 32, 3, 3)) * 0.06
    dy = rng.standard_normal((4, 32, 28, 28))
    exact = _run("numpy", x, w, None, 1, dy)
    f32 = [a.astype(np.float32) for a in (x, w, dy)]
    for kernel in ("numba", "numpy"):
        with _any_channels(tile), _counting() as spy:
            got = _run(kernel, f32[0], f32[1], None, 1, f32[2])
        assert spy.call_count == (kernel == "numba")
        for g, r in zip(got, exact, strict=True):
            error = float(np.abs(g - r).max() / np.abs(r).max())
            assert error < (bound if kernel == "numba" else 2e-6), kernel


@pytest.mark.parametrize(
    "kwargs, shape, why",
    [
        ({"stride": 2}, (2, 16, 8, 8), "stride 2"),
        ({"dilation": 2}, (2, 16, 8, 8), "dilation"),
        ({"groups": 2}, (2, 16, 8, 8), "groups"),
        ({}, (2, 1, 8, 8), "one input channel"),
        ({"kernel": 5}, (2, 16, 8, 8), "5x5 kernel"),
        ({"cout": 48}, (1, 16, 28, 28), "more than twice as many output as input channels"),
        ({"cout": 64}, (1, 64, 7, 7), "a 7x7 output"),
        ({"cout": 16}, (1, 16, 14, 14), "16 channels at 14x14"),
        ({"cout": 16}, (1, 16, 26, 26), "16 channels at 26x26"),
    ],
)
def test_other_convolutions_stay_on_im2col(kwargs, shape, why):
    kernel, groups = kwargs.pop("kernel", 3), kwargs.get("groups", 1)
    x = td.tensor(np.ones(shape, np.float32))
    w = np.ones((kwargs.pop("cout", 4), shape[1] // groups, kernel, kernel), np.float32)
    w = td.tensor(w)
    with kernels.use_kernels("numba"), _counting() as spy:
        F.conv2d(x, w, padding=1, **kwargs)
    assert spy.call_count == 0, why


@pytest.mark.parametrize(
    "shape, cout, tile",
    [
        ((1, 32, 28, 28), 32, 4),
        ((1, 16, 28, 28), 16, 4),
        ((1, 16, 28, 28), 32, 4),
        ((1, 64, 14, 14), 64, 2),
        ((1, 32, 14, 14), 32, 2),
        ((1, 32, 14, 14), 64, 2),
        ((1, 128, 14, 20), 128, 2),
    ],
)
def test_wide_enough_layers_take_winograd(shape, cout, tile):
    x = td.tensor(np.ones(shape, np.float32))
    w = td.tensor(np.ones((cout, shape[1], 3, 3), np.float32))
    with kernels.use_kernels("numba"), _counting() as spy:
        F.conv2d(x, w, padding=1)
    assert spy.call_count == 1 and spy.call_args.args[-1] == tile


@pytest.mark.parametrize("tile, v_bytes", [(2, 16 * 16 * 4 * 20 * 4), (4, 36 * 16 * 4 * 6 * 4)])
def test_a_batch_over_the_im2col_budget_stays_on_the_chunked_path(tile, v_bytes):
    """``v_bytes``, 4 images' V in float32: F(2x2) 16 planes x 16 channels x 4 rows of 4 (+1
    unused) tiles; F(4x4) 36 planes x 16 channels x 2 rows of 2 (+1) tiles."""
    x = td.tensor(np.ones((4, 16, 8, 8), np.float32))
    w = td.tensor(np.ones((4, 16, 3, 3), np.float32))
    with kernels.use_kernels("numba"), _any_channels(tile), _counting() as spy:
        with kernels.im2col_budget(v_bytes):
            F.conv2d(x, w, padding=1)
        assert spy.call_count == 1 and spy.call_args.args[-1] == tile
        with kernels.im2col_budget(v_bytes - 1):
            F.conv2d(x, w, padding=1)
    assert spy.call_count == 1


def test_double_backward_after_a_winograd_forward():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 3, 3))
    results = []
    for kernel in ("numba", "numpy"):
        with kernels.use_kernels(kernel), _any_channels(), _counting() as spy:
            xt, wt = td.tensor(x, requires_grad=True), td.tensor(w, requires_grad=True)
            (gx,) = td.grad((F.conv2d(xt, wt, padding=1) ** 2).sum(), [xt], create_graph=True)
            (gw,) = td.grad((gx**2).sum(), [wt])
            results.append((gx.detach().numpy(), gw.numpy()))
        assert spy.call_count == (kernel == "numba")
    for g, r in zip(*results, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
