import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.devices import CPU
from tests.op_check import check_op, torch
from tinydl.testing import tensors

TF = torch and torch.nn.functional


@st.composite
def bn_input(draw):
    """(N, C, *) with at least 2 values per channel."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    extra = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if n * int(np.prod(extra)) < 2:
        n = 2
    return draw(tensors((n, c) + extra, noncontiguous=None))


def np_batch_norm_train(x, w=None, b=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (-1,) + (1,) * (x.ndim - 2)
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    y = y if w is None else y * w.reshape(shape)
    return y if b is None else y + b.reshape(shape)


@given(x=bn_input(), affine=st.booleans(), data=st.data())
def test_batch_norm_training(backend, x, affine, data):
    c = x.shape[1]
    inputs = [x]
    if affine:
        inputs += [data.draw(tensors((c,))), data.draw(tensors((c,)))]
    check_op(
        lambda a, *wb: F.batch_norm(a, None, None, *wb, training=True),
        inputs,
        lambda a, *wb: np_batch_norm_train(a, *wb),
        TF and (lambda a, *wb: TF.batch_norm(a, None, None, *wb, training=True)),
        second_order=True,
        backend=backend,
    )


@given(x=bn_input(), data=st.data())
def test_batch_norm_with_a_residual_is_relu_of_the_sum(backend, x, data):
    """``batch_norm(.., relu=True, residual=r)``: ``relu(batch_norm(x) + r)``, one fused op in
    training (``BatchNormAddRelu``), against NumPy and PyTorch, gradients of every input to
    second order. ``r`` is moved so that every sum stays 0.05 from the ReLU's kink (finite
    differences then straddle none)."""
    c = x.shape[1]
    w, b, r = data.draw(tensors((c,))), data.draw(tensors((c,))), data.draw(tensors(x.shape))
    host = [t.detach().numpy() for t in (x, w, b, r)]
    z = np_batch_norm_train(*host[:3]) + host[3]
    r = td.tensor(host[3] + np.where(np.abs(z) < 0.05, 0.2, 0.0), requires_grad=True)
    out = check_op(
        lambda a, w_, b_, r_: F.batch_norm(a, None, None, w_, b_, training=True, relu=True,
                                           residual=r_),
        [x, w, b, r],
        lambda a, w_, b_, r_: np.maximum(np_batch_norm_train(a, w_, b_) + r_, 0),
        TF and (lambda a, w_, b_, r_: TF.relu(TF.batch_norm(a, None, None, w_, b_, training=True)
                                               + r_)),
        second_order=True,
        backend=backend,
    )
    assert "BatchNormAddRelu" in repr(out.grad_fn)


def test_batch_norm_residual_needs_relu_and_broadcasts_by_composing():
    x, r = td.randn(4, 3, 2, 2), td.randn(3, 1, 1)
    with pytest.raises(ValueError, match="batch_norm: a residual is added before the ReLU"):
        F.batch_norm(x, None, None, training=True, residual=r)
    out = F.batch_norm(x, None, None, training=True, relu=True, residual=r)  # (3, 1, 1): composed
    expected = np.maximum(np_batch_norm_train(x.numpy()) + r.numpy(), 0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert "BatchNormAddRelu" not in repr(out.grad_fn)


def composed_batch_norm(x, w, b, eps=1e-5):
    """The reference twin of the fused training batch_norm, from reduction ops."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (-1,) + (1,) * (x.ndim - 2)
    mean = x.mean(axes, keepdim=True)
    var = ((x - mean) * (x - mean)).mean(axes, keepdim=True)
    return (x - mean) / (var + eps) ** 0.5 * w.reshape(shape) + b.reshape(shape)


@given(x=bn_input(), data=st.data())
def test_fused_batch_norm_equals_composed_twin(backend, x, data):
    c = x.shape[1]
    x, w, b = (backend.put(t) for t in (x, data.draw(tensors((c,))), data.draw(tensors((c,)))))
    fused = F.batch_norm(x, None, None, w, b, training=True)
    twin = composed_batch_norm(x, w, b)
    np.testing.assert_allclose(backend.numpy(fused), backend.numpy(twin), rtol=1e-9, atol=1e-9)
    v = backend.tensor(np.random.default_rng(0).standard_normal(x.shape))
    g1 = td.grad((fused * v).sum(), [x, w, b], create_graph=True)
    g2 = td.grad((twin * v).sum(), [x, w, b], create_graph=True)
    atol1, atol2 = _derivative_atols(backend.numpy(x), backend.numpy(w))
    for a, e in zip(g1, g2):
        np.testing.assert_allclose(backend.numpy(a), backend.numpy(e), rtol=1e-7, atol=atol1)
    # second derivatives agree too
    h1 = td.grad((g1[0] * v).sum(), [x, w])
    h2 = td.grad((g2[0] * v).sum(), [x, w])
    for a, e in zip(h1, h2):
        np.testing.assert_allclose(backend.numpy(a), backend.numpy(e), rtol=1e-6, atol=atol2)


@pytest.mark.parametrize("c", [-3.6722118085104425, 3.3020446182217738, 1.5729])
def test_fused_and_composed_agree_on_a_constant_batch(c):
    """Only rounding noise is left to compare (found by the thorough profile, seed 7): a fixed
    atol failed for 57 of 300 constants; the tolerance scaled by 1/std holds for all."""
    x = td.tensor(np.full((1, 3, 3), c), dtype=td.float64, requires_grad=True)
    w, b = td.full((3,), 2.0, dtype=td.float64), td.zeros(3, dtype=td.float64)
    w.requires_grad_(True), b.requires_grad_(True)
    draws = iter([w, b])
    inner = test_fused_batch_norm_equals_composed_twin.hypothesis.inner_test
    inner(CPU, x, type("Draws", (), {"draw": lambda self, _: next(draws)})())


def _derivative_atols(x, w, eps=1e-5):
    """Absolute tolerances of the first and second derivatives: the rounding of ``x - mean``
    (about ``u * max|x|``) is amplified by ``1/std`` once per derivative order, so a batch of
    (nearly) constant channels leaves only rounding noise to compare (``std -> sqrt(eps)``)."""
    axes = (0,) + tuple(range(2, x.ndim))
    inv_std = 1 / np.sqrt(x.var(axis=axes).min() + eps)
    scale = 64 * np.finfo(x.dtype).eps * np.abs(x).max() * max(1.0, np.abs(w).max())
    scale *= x.size // x.shape[1] * 4  # v ~ N(0, 1): |v| < 4; a sum over each channel
    return max(1e-9, scale * inv_std**2), max(1e-8, scale * inv_std**3)


@pytest.mark.parametrize("as_tensor", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 4, 4)])
def test_running_stats_updated_in_place_like_pytorch(backend, shape, as_tensor):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 2 + 1
    rm, rv = np.zeros(shape[1]), np.ones(shape[1])
    run_mean = backend.tensor(rm) if as_tensor else backend.array(rm.copy())
    run_var = backend.tensor(rv) if as_tensor else backend.array(rv.copy())
    mean_buffer = run_mean.data if as_tensor else run_mean
    for _ in range(2):
        F.batch_norm(backend.tensor(x), run_mean, run_var, training=True, momentum=0.3)
    assert (run_mean.data if as_tensor else run_mean) is mean_buffer  # the same array, updated
    axes = (0,) + tuple(range(2, len(shape)))
    n = x.size // shape[1]
    exp_m, exp_v = rm, rv
    for _ in range(2):
        exp_m = 0.7 * exp_m + 0.3 * x.mean(axes)
        exp_v = 0.7 * exp_v + 0.3 * x.var(axes) * n / (n - 1)
    got_m = backend.numpy(run_mean)
    got_v = backend.numpy(run_var)
    np.testing.assert_allclose(got_m, exp_m, rtol=1e-12)
    np.testing.assert_allclose(got_v, exp_v, rtol=1e-12)
    if torch is not None:
        tm, tv = torch.tensor(rm), torch.tensor(rv)
        for _ in range(2):
            TF.batch_norm(torch.tensor(x), tm, tv, training=True, momentum=0.3)
        np.testing.assert_allclose(got_m, tm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(got_v, tv.numpy(), rtol=1e-12)


@given(x=bn_input(), data=st.data())
def test_batch_norm_eval_uses_running_stats(backend, x, data):
    c = x.shape[1]
    rm = backend.put(data.draw(tensors((c,), requires_grad=False)))
    rv = backend.put(data.draw(tensors((c,), min_value=0.1, max_value=3.0, requires_grad=False)))
    w, b = data.draw(tensors((c,))), data.draw(tensors((c,)))
    rm_before, rv_before = backend.numpy(rm).copy(), backend.numpy(rv).copy()
    shape = (-1,) + (1,) * (x.ndim - 2)

    def ref(a, ww, bb):
        scale = np.sqrt(rv_before.reshape(shape) + 1e-5)
        return (a - rm_before.reshape(shape)) / scale * ww.reshape(shape) + bb.reshape(shape)

    tm, tv = (None, None) if torch is None else (torch.tensor(rm_before), torch.tensor(rv_before))
    check_op(
        lambda a, ww, bb: F.batch_norm(a, rm, rv, ww, bb, training=False),
        [x, w, b],
        ref,
        TF and (lambda a, ww, bb: TF.batch_norm(a, tm, tv, ww, bb)),
        second_order=True,
        backend=backend,
    )
    np.testing.assert_array_equal(backend.numpy(rm), rm_before)
    np.testing.assert_array_equal(backend.numpy(rv), rv_before)


def test_batch_norm_errors():
    with pytest.raises(
        ValueError,
        match=r"batch_norm: expected more than 1 value per channel when "
        r"training, got input of shape \(1, 3\)",
    ):
        F.batch_norm(td.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"got input of shape \(1, 2, 1, 1\)"):
        F.batch_norm(td.randn(1, 2, 1, 1), td.zeros(2), td.ones(2), training=True)
    F.batch_norm(td.randn(1, 3), td.zeros(3), td.ones(3), training=False)  # fine in eval
    with pytest.raises(
        td.ShapeError,
        match=r"batch_norm: weight must have shape \(3,\) for "
        r"input \(2, 3\), got \(4,\)",
    ):
        F.batch_norm(td.randn(2, 3), None, None, td.ones(4), training=True)
    with pytest.raises(td.ShapeError, match=r"batch_norm: running_mean must have shape \(3,\)"):
        F.batch_norm(td.randn(2, 3), td.zeros(2), td.ones(3))
    with pytest.raises(ValueError, match="running_mean and running_var are needed in eval mode"):
        F.batch_norm(td.randn(2, 3), None, None)
    with pytest.raises(td.ShapeError, match=r"expected input of shape \(N, C, \*\), got \(3,\)"):
        F.batch_norm(td.randn(3), None, None, training=True)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_float32_keeps_float32(backend, training):
    on = backend.name
    x = td.randn(4, 3, 2, 2, requires_grad=True, device=on)
    w, b = td.ones(3, requires_grad=True, device=on), td.zeros(3, requires_grad=True, device=on)
    rm, rv = td.zeros(3, device=on), td.ones(3, device=on)
    out = F.batch_norm(x, rm, rv, w, b, training=training)
    (out * td.randn(4, 3, 2, 2, device=on)).sum().backward()
    assert out.dtype == x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    assert rm.dtype == rv.dtype == np.float32


@st.composite
def ln_problem(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    norm = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    if int(np.prod(norm)) < 2:
        norm = norm[:-1] + (2,)
    x = draw(tensors(lead + norm, noncontiguous=None))
    affine = draw(st.booleans())
    wb = [draw(tensors(norm)), draw(tensors(norm))] if affine else []
    return x, norm, wb


@given(problem=ln_problem())
def test_layer_norm(backend, problem):
    x, norm, wb = problem
    axes = tuple(range(x.ndim - len(norm), x.ndim))

    def ref(a, w=None, b=None):
        y = (a - a.mean(axes, keepdims=True)) / np.sqrt(a.var(axes, keepdims=True) + 1e-5)
        return y if w is None else y * w + b

    check_op(
        lambda a, *p: F.layer_norm(a, norm, *p),
        [x, *wb],
        ref,
        TF and (lambda a, *p: TF.layer_norm(a, norm, *p)),
        second_order=True,
        backend=backend,
    )


def test_layer_norm_int_shape_float32_and_errors(backend):
    x = td.randn(2, 5, requires_grad=True, device=backend.name)
    w = td.ones(5, requires_grad=True, device=backend.name)
    out = F.layer_norm(x, 5, w)
    (out * td.randn(2, 5, device=backend.name)).sum().backward()
    assert out.dtype == x.grad.dtype == w.grad.dtype == np.float32
    with pytest.raises(
        td.ShapeError,
        match=r"layer_norm: normalized_shape \(4,\) must match the "
        r"last dims of input \(2, 5\)",
    ):
        F.layer_norm(x, (4,))
    with pytest.raises(td.ShapeError, match=r"layer_norm: weight must have shape \(5,\)"):
        F.layer_norm(x, 5, td.ones(4))


def test_fused_batch_norm_backward_equals_its_double_backward_path(backend):
    """The kernel backward (plain) and the composed one (create_graph) agree."""
    x, w, b, g = (
        td.randn(*shape, dtype=td.float64, requires_grad=grad, device=backend.name)
        for shape, grad in (((6, 3, 4, 4), True), ((3,), True), ((3,), True), ((6, 3, 4, 4), False))
    )
    plain = td.grad(F.batch_norm(x, None, None, w, b, training=True), [x, w, b], g)
    built = td.grad(F.batch_norm(x, None, None, w, b, training=True), [x, w, b], g,
                    create_graph=True)
    assert built[0].requires_grad and built[1].requires_grad  # d(bias) = sum(g): a constant
    for p, q in zip(plain, built):
        np.testing.assert_allclose(backend.numpy(p), backend.numpy(q), rtol=1e-10, atol=1e-12)
