import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, torch
from tinydl.testing import tensors

TF = torch.nn.functional if torch is not None else None


def pool_reference(x, kernel, stride, padding, reduce):
    """Pool by visiting every window; padding is -inf for max and 0 (counted) for mean."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    fill = -np.inf if reduce is np.max else 0.0
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), fill)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    out = np.zeros((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        out[:, :, i, j] = reduce(xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw], axis=(2, 3))
    return out


def adaptive_reference(x, out_size):
    h, w = x.shape[2:]
    oh, ow = out_size
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
        out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


@st.composite
def pool_params(draw, max_size=6):
    """``(x_shape, kernel, stride, padding)`` with padding at most half the kernel."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = draw(st.sampled_from([None, (1, 1), (2, 1), (2, 3)]))
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), max_size))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), max_size))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return shape, kernel, stride, padding


@st.composite
def distinct_tensors(draw, shape):
    """Values 0.1 apart in a drawn order: no ties, so max pooling is differentiable."""
    seed = draw(st.integers(0, 2**32 - 1))
    size = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(size).reshape(shape) * 0.1 - size * 0.05
    return td.Tensor(values, requires_grad=True)


@given(params=pool_params(), data=st.data())
def test_max_pool2d(backend, params, data):
    shape, kernel, stride, padding = params
    x = data.draw(distinct_tensors(shape))
    ref = lambda a: pool_reference(a, kernel, stride or kernel, padding, np.max)
    tfn = TF and (lambda t: TF.max_pool2d(t, kernel, stride, padding))
    check_op(
        lambda t: F.max_pool2d(t, kernel, stride, padding), [x], ref, tfn, second_order=True,
        backend=backend,
    )


@given(params=pool_params(max_size=5), data=st.data())
def test_max_pool2d_backward_is_differentiable_in_the_upstream_gradient(backend, params, data):
    shape, kernel, stride, padding = params
    x = backend.put(data.draw(distinct_tensors(shape)))
    g = backend.put(data.draw(tensors(F.max_pool2d(x, kernel, stride, padding).shape)))

    def gradient(g):
        with td.enable_grad():  # gradcheck evaluates under no_grad
            y = F.max_pool2d(x, kernel, stride, padding)
            return td.grad(y, x, g, create_graph=True)[0]

    td.gradcheck(gradient, [g])
    td.gradgradcheck(lambda g: gradient(g) ** 2, [g])


@given(params=pool_params(), data=st.data())
def test_avg_pool2d(backend, params, data):
    shape, kernel, stride, padding = params
    x = data.draw(tensors(shape, noncontiguous=None))
    ref = lambda a: pool_reference(a, kernel, stride or kernel, padding, np.mean)
    tfn = TF and (lambda t: TF.avg_pool2d(t, kernel, stride, padding))
    check_op(
        lambda t: F.avg_pool2d(t, kernel, stride, padding), [x], ref, tfn, second_order=True,
        backend=backend,
    )


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
    out=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    data=st.data(),
)
def test_adaptive_avg_pool2d(backend, shape, out, data):
    x = data.draw(tensors(shape, noncontiguous=None))
    tfn = TF and (lambda t: TF.adaptive_avg_pool2d(t, out))
    check_op(
        lambda t: F.adaptive_avg_pool2d(t, out),
        [x],
        lambda a: adaptive_reference(a, out),
        tfn,
        second_order=True,
        rtol=1e-12,
        backend=backend,
    )


@pytest.mark.parametrize("out,expected", [(2, (2, 2)), ((3, None), (3, 6)), ((1, 4), (1, 4))])
def test_adaptive_output_size_forms(backend, out, expected):
    x = td.randn(1, 2, 4, 6, dtype=td.float64, device=backend.name)
    y = F.adaptive_avg_pool2d(x, out)
    assert y.shape == (1, 2) + expected
    want = adaptive_reference(backend.numpy(x), expected)
    np.testing.assert_allclose(backend.numpy(y), want, rtol=1e-12)


def test_max_pool2d_propagates_nan_and_defaults_stride_to_kernel(backend):
    x = backend.tensor([[[[1.0, float("nan"), 0.0, 3.0], [2.0, 0.0, 1.0, 2.0]]]])
    y = F.max_pool2d(x, 2)
    assert y.shape == (1, 1, 1, 2)
    got = backend.numpy(y)
    assert np.isnan(got[0, 0, 0, 0]) and got[0, 0, 0, 1] == 3.0


@pytest.mark.parametrize(
    "op",
    [
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda x: F.avg_pool2d(x, (2, 3), 1, (1, 0)),
        lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
        lambda x: F.adaptive_avg_pool2d(x, 3),
    ],
)
def test_float32_stays_float32_and_unbatched_input(backend, op):
    x = td.randn(2, 3, 6, 6, requires_grad=True, device=backend.name)
    y = op(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    # NOTE: close, not equal: a GPU may pick another summation order for another batch size
    np.testing.assert_allclose(backend.numpy(op(x[0].detach())), backend.numpy(y)[0], rtol=1e-6)


@pytest.mark.parametrize(
    "fn,kwargs,error,match",
    [
        (
            F.max_pool2d,
            {"kernel_size": 2, "padding": -1},
            ValueError,
            r"max_pool2d: padding must be >= 0, got \(-1, -1\)",
        ),
        (
            F.max_pool2d,
            {"kernel_size": 2, "stride": 0},
            ValueError,
            r"max_pool2d: stride must be >= 1, got \(0, 0\)",
        ),
        (
            F.max_pool2d,
            {"kernel_size": 0},
            ValueError,
            r"max_pool2d: kernel_size must be >= 1, got \(0, 0\)",
        ),
        (
            F.max_pool2d,
            {"kernel_size": 2, "padding": 2},
            ValueError,
            r"max_pool2d: padding \(2, 2\) must be at most half of kernel_size \(2, 2\)",
        ),
        (
            F.max_pool2d,
            {"kernel_size": (6, 2)},
            ValueError,
            r"max_pool2d: kernel \(6, 2\) is larger than the padded input \(5, 5\) "
            r"\(input \(1, 2, 5, 5\), padding \(0, 0\)\)",
        ),
        (
            F.avg_pool2d,
            {"kernel_size": 8, "padding": 1},
            ValueError,
            r"avg_pool2d: kernel \(8, 8\) is larger than the padded input \(7, 7\)",
        ),
        (
            F.avg_pool2d,
            {"kernel_size": "2"},
            TypeError,
            r"avg_pool2d: kernel_size must be an int or a pair of ints, got '2'",
        ),
        (
            F.adaptive_avg_pool2d,
            {"output_size": 0},
            ValueError,
            r"adaptive_avg_pool2d: output_size must be >= 1, got \(0, 0\)",
        ),
    ],
)
def test_argument_errors(fn, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(td.randn(1, 2, 5, 5), **kwargs)


def test_shape_and_dtype_errors():
    with pytest.raises(
        td.ShapeError,
        match=r"max_pool2d: expected input \(N, C, H, W\) or "
        r"\(C, H, W\), got shape \(5, 5\)",
    ):
        F.max_pool2d(td.randn(5, 5), 2)
    with pytest.raises(td.ShapeError, match=r"adaptive_avg_pool2d: expected input"):
        F.adaptive_avg_pool2d(td.randn(1, 1, 1, 5, 5), 2)
    with pytest.raises(td.DTypeError, match="avg_pool2d: needs a floating-point input, got int64"):
        F.avg_pool2d(td.tensor([[[[1, 2], [3, 4]]]]), 2)
    y = F.max_pool2d(td.tensor([[[[1, 2], [3, 4]]]]), 2)  # integers pool without gradient
    assert y.dtype == np.int64 and y.item() == 4
