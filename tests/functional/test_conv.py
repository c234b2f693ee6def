import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, torch
from tinydl.autograd import record_ops
from tinydl.backend import kernels
from tinydl.testing import conv_params, tensors

TF = torch.nn.functional if torch is not None else None


def conv_reference(x, w, b, stride, padding, dilation, groups):
    """Cross-correlation as a sum over kernel offsets of strided slices (no im2col)."""
    n, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.zeros((n, cin, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph : ph + h, pw : pw + wd] = x
    out = np.zeros((n, cout, oh, ow))
    cout_g = cout // groups
    for g in range(groups):
        xs = xp[:, g * cin_g : (g + 1) * cin_g]
        ws = w[g * cout_g : (g + 1) * cout_g]
        for i in range(kh):
            for j in range(kw):
                patch = xs[
                    :,
                    :,
                    i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                    j * dw : j * dw + sw * (ow - 1) + 1 : sw,
                ]
                out[:, g * cout_g : (g + 1) * cout_g] += np.einsum(
                    "nchw,oc->nohw", patch, ws[:, :, i, j]
                )
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def conv_fns(p):
    args = (p["stride"], p["padding"], p["dilation"], p["groups"])
    fn = lambda x, w, b=None: F.conv2d(x, w, b, *args)
    ref = lambda x, w, b=None: conv_reference(x, w, b, *args)
    tfn = lambda x, w, b=None: TF.conv2d(x, w, b, *args)
    return fn, ref, tfn if torch is not None else None


@given(p=conv_params(), bias=st.booleans(), data=st.data())
def test_conv2d_matches_reference_torch_and_gradcheck(backend, p, bias, data):
    x = data.draw(tensors(p["x_shape"], noncontiguous=None))
    w = data.draw(tensors(p["w_shape"], noncontiguous=None))
    inputs = [x, w] + ([data.draw(tensors((p["w_shape"][0],)))] if bias else [])
    fn, ref, tfn = conv_fns(p)
    check_op(fn, inputs, ref, tfn, backend=backend)


@given(p=conv_params(max_batch=1, max_channels=2, max_size=4, max_kernel=2), data=st.data())
def test_conv2d_second_derivatives(backend, p, data):
    x, w = data.draw(tensors(p["x_shape"])), data.draw(tensors(p["w_shape"]))
    b = data.draw(tensors((p["w_shape"][0],)))
    fn, ref, _ = conv_fns(p)
    check_op(fn, [x, w, b], ref, second_order=True, backend=backend)


@given(p=conv_params(max_batch=1, max_channels=2, max_size=4, max_kernel=2), data=st.data())
def test_conv2d_backward_is_differentiable_in_the_upstream_gradient(backend, p, data):
    # gradgradcheck holds the upstream gradient fixed; here it varies (double backward of
    # the gradient map, as in a gradient penalty or a Hessian-vector product)
    x, w = data.draw(tensors(p["x_shape"])), data.draw(tensors(p["w_shape"]))
    fn = conv_fns(p)[0]
    out_shape = fn(x, w).shape
    g, x, w = (backend.put(t) for t in (data.draw(tensors(out_shape)), x, w))

    def gradients(g, x, w):
        with td.enable_grad():  # gradcheck evaluates under no_grad
            return td.grad(fn(x, w), [x, w], g, create_graph=True)

    td.gradcheck(gradients, [g, x, w])


def _count_im2col(monkeypatch):
    """Wrap the active im2col kernel (and the Numba per-image one, which conv2d runs with one
    group); returns the list of batch sizes they were called with."""
    calls, table = [], kernels.KERNELS[kernels.active_kernels()]
    inner = table["im2col"]
    monkeypatch.setitem(table, "im2col", lambda x, *a: calls.append(x.shape[0]) or inner(x, *a))
    if kernels.active_kernels() == "numba":
        from tinydl.backend.kernels import numba_conv_images as images

        per_image = images.im2col_images

        def counted(x, *a, **kw):
            calls.append(x.shape[0])
            return per_image(x, *a, **kw)

        monkeypatch.setattr(images, "im2col_images", counted)
    return calls


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    old = td.backend.threads.get_num_threads()
    td.backend.threads.set_num_threads(request.param)
    yield request.param
    td.backend.threads.set_num_threads(old)


def test_conv2d_is_one_im2col_and_one_gemm_per_thread(monkeypatch, threads):
    x = td.randn(8, 4, 6, 6, requires_grad=True)
    for groups, wshape in ((1, (6, 4, 3, 3)), (2, (6, 2, 3, 3))):
        calls = _count_im2col(monkeypatch)
        with record_ops() as ops:
            y = F.conv2d(x, td.randn(*wshape, requires_grad=True), groups=groups, padding=1)
        # the batch split into one share per thread
        assert [c[0].__name__ for c in ops] == ["Conv2d"] and calls == [8 // threads] * threads
        y.sum().backward()  # reuses the columns: no second im2col
        assert len(calls) == threads


@pytest.mark.parametrize("create_graph", [False, True])
def test_conv2d_over_the_im2col_budget_runs_in_chunks(monkeypatch, create_graph, threads):
    x = td.randn(7, 3, 6, 5, dtype=td.float64, requires_grad=True)
    w = td.randn(4, 3, 3, 3, dtype=td.float64, requires_grad=True)
    b = td.randn(4, dtype=td.float64, requires_grad=True)
    g = td.randn(7, 4, 6, 5, dtype=td.float64)

    def run():
        y = F.conv2d(x, w, b, padding=1)
        return [y.data, *(t.data for t in td.grad(y, [x, w, b], g, create_graph=create_graph))]

    expected = run()
    per_image = 3 * 9 * 6 * 5 * 8
    old = kernels.set_im2col_budget(2 * per_image + 1)
    try:
        assert kernels.get_im2col_budget() == 2 * per_image + 1
        calls = _count_im2col(monkeypatch)
        got = run()
    finally:
        kernels.set_im2col_budget(old)
    # one thread: chunks of 2, 2, 2, 1; two threads share the budget: chunks of one image.
    # Backward recomputes them (or, building a graph, takes one piece)
    forward = [2, 2, 2, 1] if threads == 1 else [1] * 7
    assert sorted(calls) == sorted(forward + ([7] if create_graph else forward))
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_im2col_budget_is_validated():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="set_im2col_budget"):
            kernels.set_im2col_budget(bad)


def test_im2col_and_col2im_functions(backend):
    x = td.randn(2, 3, 5, 4, dtype=td.float64, requires_grad=True, device=backend.name)
    args = ((2, 3), 1, (1, 0), (2, 1))  # kernel, stride, padding, dilation
    cols = F.im2col(x, *args)
    assert cols.shape == (3 * 2 * 3, 2 * 5 * 2) and cols.device == backend.device
    c = td.randn(*cols.shape, dtype=td.float64, requires_grad=True, device=backend.name)
    lhs, rhs = (cols * c).sum(), (x * F.col2im(c, x.shape, *args)).sum()  # adjoint pair
    np.testing.assert_allclose(lhs.item(), rhs.item(), rtol=1e-12)
    td.gradcheck(lambda t: F.im2col(t, *args), [x])
    td.gradgradcheck(lambda t: F.im2col(t, *args) ** 2, [x])
    td.gradgradcheck(lambda t: F.col2im(t, x.shape, *args) ** 2, [c])


def test_col2im_shape_error():
    with pytest.raises(
        td.ShapeError,
        match=r"col2im: columns of shape \(4, 3\) do not fit .*"
        r"expected \(9, 8\)",
    ):
        F.col2im(td.randn(4, 3), (2, 1, 4, 4), 3)


def test_float32_stays_float32(backend):
    x = td.randn(2, 4, 5, 5, requires_grad=True, device=backend.name)
    w = td.randn(6, 2, 3, 3, requires_grad=True, device=backend.name)
    b = td.randn(6, requires_grad=True, device=backend.name)
    y = F.conv2d(x, w, b, stride=2, padding=1, groups=2)
    assert y.dtype == np.float32 and y.shape == (2, 6, 3, 3)
    y.sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    if torch is not None:
        ref = TF.conv2d(*(torch.tensor(backend.numpy(t)) for t in (x, w, b)), 2, 1, 1, 2)
        np.testing.assert_allclose(backend.numpy(y), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_unbatched_input(backend):
    x = td.randn(3, 5, 5, dtype=td.float64, device=backend.name)
    w = td.randn(2, 3, 2, 2, dtype=td.float64, device=backend.name)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (2, 6, 6)
    batched = F.conv2d(x.unsqueeze(0), w, padding=1)
    np.testing.assert_allclose(backend.numpy(y), backend.numpy(batched)[0])


X, W = td.randn(2, 3, 8, 8), td.randn(5, 3, 3, 3)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"padding": -1}, ValueError, r"conv2d: padding must be >= 0, got \(-1, -1\)"),
        ({"stride": (1, 0)}, ValueError, r"conv2d: stride must be >= 1, got \(1, 0\)"),
        ({"dilation": 0}, ValueError, r"conv2d: dilation must be >= 1, got \(0, 0\)"),
        ({"stride": 1.5}, TypeError, r"conv2d: stride must be an int or a pair of ints, got 1.5"),
        (
            {"dilation": 4},
            ValueError,
            r"conv2d: kernel \(3, 3\) \(dilated to \(9, 9\)\) is larger "
            r"than the padded input \(8, 8\) \(input \(2, 3, 8, 8\)",
        ),
        (
            {"groups": 2},
            ValueError,
            r"conv2d: groups=2 must divide both the input channels \(3\) "
            r"and the output channels \(5\)",
        ),
        ({"groups": 0}, ValueError, r"conv2d: groups must be a positive int, got 0"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        F.conv2d(X, W, **kwargs)


def test_shape_and_dtype_errors():
    with pytest.raises(
        td.ShapeError,
        match=r"conv2d: input has 3 channels but weight expects 4 "
        r"\(input \(2, 3, 8, 8\), weight \(5, 4, 3, 3\)\)",
    ):
        F.conv2d(X, td.randn(5, 4, 3, 3))
    with pytest.raises(
        td.ShapeError,
        match=r"input has 4 channels but weight expects 2 "
        r"\(2 groups x 1\)",
    ):
        F.conv2d(td.randn(1, 4, 4, 4), td.randn(4, 1, 3, 3), groups=2)
    with pytest.raises(
        ValueError,
        match=r"conv2d: kernel \(3, 3\) is larger than the padded "
        r"input \(2, 2\)",
    ):
        F.conv2d(td.randn(1, 3, 2, 2), W)
    with pytest.raises(td.ShapeError, match=r"conv2d: bias must have shape \(5,\), got \(3,\)"):
        F.conv2d(X, W, td.randn(3))
    with pytest.raises(
        td.ShapeError,
        match=r"conv2d: expected input \(N, C, H, W\) or "
        r"\(C, H, W\), got shape \(8, 8\)",
    ):
        F.conv2d(td.randn(8, 8), W)
    with pytest.raises(td.DTypeError, match="conv2d: input is float32 but weight is float64"):
        F.conv2d(X, W.double())


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_backward_in_pieces_matches_one_piece(monkeypatch, threads, groups):
    from tinydl.functional import conv as conv_module

    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 4, 6, 5))
    w, g = rng.standard_normal((6, 4 // groups, 3, 3)), rng.standard_normal((7, 6, 3, 3))

    def grads():
        xt, wt = td.tensor(x, requires_grad=True), td.tensor(w, requires_grad=True)
        F.conv2d(xt, wt, stride=2, padding=1, groups=groups).backward(td.tensor(g))
        return xt.grad.numpy(), wt.grad.numpy()

    whole = grads()
    monkeypatch.setattr(conv_module, "_BACKWARD_PIECE", 1)  # one image per piece
    for a, e in zip(grads(), whole):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
