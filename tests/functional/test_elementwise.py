import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, compare_with_torch, torch
from tinydl.testing import broadcastable_shapes, shapes, tensors

TF = torch.nn.functional if torch is not None else None
_erf_ref = np.vectorize(math.erf, otypes=[np.float64])  # independent of tinydl's erf


def _sigmoid_ref(x):
    return 1 / (1 + np.exp(-x))


def _softplus_ref(beta, threshold):
    return lambda x: np.where(beta * x > threshold, x, np.log(1 + np.exp(beta * x)) / beta)


def _t(name, *args, **kwargs):
    """A PyTorch reference ``torch.<name>`` or ``torch.nn.functional.<name>`` (None without it)."""
    if torch is None:
        return None
    fn = getattr(TF if name in ("relu", "leaky_relu", "elu", "gelu", "softplus") else torch, name)
    return lambda *xs: fn(*xs, *args, **kwargs)


# (id, tinydl op, NumPy reference, PyTorch reference, strategy kwargs: values and kinks to avoid)
UNARY = [
    ("exp", F.exp, np.exp, _t("exp"), {}),
    ("log", F.log, np.log, _t("log"), dict(min_value=0.1)),
    ("log1p", F.log1p, np.log1p, _t("log1p"), dict(min_value=-0.9)),
    ("sqrt", F.sqrt, np.sqrt, _t("sqrt"), dict(min_value=0.1)),
    ("abs", F.abs, np.abs, _t("abs"), dict(avoid=(0.0,))),
    ("sin", F.sin, np.sin, _t("sin"), {}),
    ("cos", F.cos, np.cos, _t("cos"), {}),
    ("tanh", F.tanh, np.tanh, _t("tanh"), {}),
    ("sigmoid", F.sigmoid, _sigmoid_ref, _t("sigmoid"), dict(min_value=-8.0, max_value=8.0)),
    ("erf", F.erf, _erf_ref, _t("erf"), {}),
    ("relu", F.relu, lambda x: np.where(x > 0, x, 0.0), _t("relu"), dict(avoid=(0.0,))),
    ("leaky_relu", F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), _t("leaky_relu"),
     dict(avoid=(0.0,))),
    ("leaky_relu_0.2", lambda x: F.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
     _t("leaky_relu", 0.2), dict(avoid=(0.0,))),
    ("elu", F.elu, lambda x: np.where(x > 0, x, np.exp(x) - 1), _t("elu"), dict(avoid=(0.0,))),
    ("elu_0.5", lambda x: F.elu(x, alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)),
     _t("elu", alpha=0.5), dict(avoid=(0.0,))),
    ("gelu", F.gelu, lambda x: x * (1 + _erf_ref(x / math.sqrt(2))) / 2, _t("gelu"), {}),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
     lambda x: x / 2 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
     _t("gelu", approximate="tanh"), {}),
    ("softplus", F.softplus, _softplus_ref(1.0, 20.0), _t("softplus"), {}),
    # beta x crosses the threshold at x = 2.5, where the gradient jumps (sigmoid(5) -> 1)
    ("softplus_beta2_thr5", lambda x: F.softplus(x, beta=2, threshold=5),
     _softplus_ref(2.0, 5.0), _t("softplus", beta=2, threshold=5),
     dict(min_value=-4.0, max_value=4.0, avoid=(2.5,))),
    ("clamp", lambda x: F.clamp(x, -1.0, 1.5), lambda x: np.minimum(np.maximum(x, -1.0), 1.5),
     _t("clamp", -1.0, 1.5), dict(avoid=(-1.0, 1.5))),
    ("clamp_min", lambda x: F.clamp(x, min=0.5), lambda x: np.maximum(x, 0.5),
     _t("clamp", min=0.5), dict(avoid=(0.5,))),
    ("clip_max", lambda x: F.clip(x, max=-0.5), lambda x: np.minimum(x, -0.5),
     _t("clip", max=-0.5), dict(avoid=(-0.5,))),
]  # fmt: skip


@pytest.mark.parametrize("op,ref,tref,kw", [u[1:] for u in UNARY], ids=[u[0] for u in UNARY])
@given(data=st.data())
def test_unary(backend, op, ref, tref, kw, data):
    x = data.draw(tensors(shapes(max_side=4), noncontiguous=None, **kw))
    check_op(op, [x], ref, tref, second_order=True, rtol=1e-12, backend=backend)


@pytest.mark.parametrize("name", ["exp", "log1p", "sin", "tanh", "sigmoid", "erf", "elu", "gelu",
                                  "softplus"])  # fmt: skip
def test_second_derivative_matches_torch(backend, name):
    if torch is None:
        pytest.skip("PyTorch is not installed (it is only a test reference)")
    x = np.linspace(-2.9, 2.9, 12)  # no exact 0: elu's kink
    xt = torch.tensor(x, requires_grad=True)
    (gt,) = torch.autograd.grad(_t(name)(xt).sum(), xt, create_graph=True)
    (ht,) = torch.autograd.grad(gt.sum(), xt)
    xd = backend.tensor(x, requires_grad=True)
    (g,) = td.grad(getattr(F, name)(xd).sum(), xd, create_graph=True)
    (h,) = td.grad(g.sum(), xd)
    np.testing.assert_allclose(backend.numpy(g), gt.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(backend.numpy(h), ht.numpy(), rtol=1e-10, atol=1e-14)


def test_erf_is_accurate_to_a_few_ulp(backend):
    special = pytest.importorskip("scipy.special")
    x = np.concatenate(
        [
            np.linspace(-7, 7, 20001),
            np.geomspace(1e-300, 30, 2000),
            [0.46875, np.nextafter(0.46875, 1), 4.0, np.nextafter(4.0, 5), 6.0],
        ]
    )
    x = np.concatenate([x, -x])
    expected = special.erf(x)
    got = backend.numpy(F.erf(backend.tensor(x)))
    ulps = np.abs(got - expected) / np.spacing(np.abs(expected))
    assert ulps.max() <= 8, f"erf off by {ulps.max()} ulp at x={x[np.argmax(ulps)]}"
    inf = backend.numpy(F.erf(backend.tensor([np.inf, -np.inf, np.nan, -0.0])))
    np.testing.assert_array_equal(inf, [1.0, -1.0, np.nan, -0.0])
    assert np.signbit(inf[-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_are_stable_for_huge_inputs(backend, dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        t = backend.tensor(x, requires_grad=True)
        s = F.sigmoid(t)
        s.sum().backward()
        u = backend.tensor(x, requires_grad=True)
        sp = F.softplus(u, threshold=1e30)  # never switches to the linear branch
        sp.sum().backward()
    assert s.dtype == dtype and t.grad.dtype == dtype and sp.dtype == dtype
    s_, sp_ = backend.numpy(s), backend.numpy(sp)
    np.testing.assert_array_equal(s_[[0, -1]], [0.0, 1.0])
    assert s_[3] == 0.5 and np.all(np.isfinite(backend.numpy(t.grad)))
    np.testing.assert_array_equal(sp_[[0, -1]], [0.0, 1000.0])
    np.testing.assert_array_equal(backend.numpy(u.grad)[[0, -1]], [0.0, 1.0])
    if torch is not None:
        xt = torch.tensor(x)
        # atol: PyTorch flushes sigmoid(-100) = 3.8e-44 (a float32 subnormal) to 0
        np.testing.assert_allclose(s_, torch.sigmoid(xt).numpy(), rtol=1e-6, atol=1e-40)
        np.testing.assert_allclose(
            backend.numpy(F.softplus(backend.tensor(x))), TF.softplus(xt).numpy(), rtol=1e-6,
            atol=0,
        )


def test_softplus_threshold_returns_x_exactly_like_torch(backend):
    x = backend.tensor([10.0, 10.01, 25.0], dtype=td.float64, requires_grad=True)
    check_op(
        lambda t: F.softplus(t, beta=2, threshold=20), [x], torch_fn=_t("softplus", 2, 20),
        backend=backend,
    )
    assert F.softplus(x, beta=2, threshold=20)[1:].tolist() == [10.01, 25.0]


def grid(t, offset=0.0):
    """``t`` rounded to multiples of 1/8 plus ``offset``: two grids with different offsets never
    tie, or come near a tie; the same grid ties exactly and often."""
    return td.tensor(np.round(t.data * 8) / 8 + offset, dtype=td.float64, requires_grad=True)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@given(data=st.data())
def test_maximum_minimum_broadcasting(backend, name, data):
    sa, sb = data.draw(broadcastable_shapes(2))
    a, b = grid(data.draw(tensors(sa))), grid(data.draw(tensors(sb)), offset=1 / 16)
    check_op(
        getattr(F, name), [a, b], getattr(np, name), _t(name), second_order=True, backend=backend
    )


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@given(data=st.data())
def test_maximum_minimum_ties_split_the_gradient(backend, name, data):
    # central differences at an exact tie give 1/2 for each side, as PyTorch's gradient does
    sa, sb = data.draw(broadcastable_shapes(2))
    a, b = grid(data.draw(tensors(sa, max_value=0.5))), grid(data.draw(tensors(sb, max_value=0.5)))
    check_op(getattr(F, name), [a, b], getattr(np, name), _t(name), backend=backend)


def test_maximum_tie_gives_half_and_numbers_keep_dtype(backend):
    a = backend.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = backend.tensor([1.0, 1.0, 4.0], requires_grad=True)
    F.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 1.0, 0.0] and b.grad.tolist() == [0.5, 0.0, 1.0]
    assert F.minimum(a, 2.5).dtype == np.float32 and F.maximum(0, a).dtype == np.float32
    assert a.maximum(b).tolist() == [1.0, 2.0, 4.0]


@st.composite
def where_inputs(draw):
    sc, sa, sb = draw(broadcastable_shapes(3))
    cond = draw(hnp.arrays(np.bool_, sc))
    return cond, draw(tensors(sa, noncontiguous=None)), draw(tensors(sb))


@given(where_inputs(), st.booleans())
def test_where_broadcasting(backend, inputs, cond_as_tensor):
    cond, a, b = inputs
    c = backend.tensor(cond) if cond_as_tensor else backend.array(cond)
    tref = torch and (lambda x, y: torch.where(torch.from_numpy(cond), x, y))
    check_op(
        lambda x, y: F.where(c, x, y),
        [a, b],
        lambda x, y: np.where(cond, x, y),
        tref,
        second_order=True,
        backend=backend,
    )


@given(where_inputs())
def test_where_with_numbers(backend, inputs):
    cond, a, _ = inputs
    c, on = torch and torch.from_numpy(cond), backend.array(cond)
    check_op(
        lambda x: F.where(on, x, 0.0),
        [a],
        lambda x: np.where(cond, x, 0.0),
        torch and (lambda x: torch.where(c, x, 0.0)),
        second_order=True,
        backend=backend,
    )
    check_op(
        lambda x: F.where(on, -1.5, x),
        [a],
        lambda x: np.where(cond, -1.5, x),
        torch and (lambda x: torch.where(c, -1.5, x)),
        second_order=True,
        backend=backend,
    )


def test_where_errors_name_op_and_shapes():
    with pytest.raises(td.ShapeError, match=r"where: shapes of cond \(2,\), a \(3,\) and b \(1,\)"):
        F.where(np.array([True, False]), td.zeros(3), td.zeros(1))
    with pytest.raises(td.DTypeError, match="where: cond must be a bool tensor, got dtype int64"):
        F.where(td.tensor([1, 0]), td.zeros(2), 1.0)


def test_clamp_is_inclusive_and_validates(backend):
    x = backend.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=td.float64, requires_grad=True)
    compare_with_torch(lambda t: F.clamp(t, -1, 1), _t("clamp", -1, 1), [x])
    F.clamp(x, -1, 1).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    compare_with_torch(lambda t: F.clamp(t, 1, -1), _t("clamp", 1, -1), [x])  # min > max
    with pytest.raises(ValueError, match="clamp: at least one of min and max"):
        F.clamp(x)
    with pytest.raises(TypeError, match=r"clamp: min must be a number or None, got a Tensor"):
        F.clamp(x, min=td.zeros(5))
    assert x.clamp(0, 1).tolist() == x.clip(0, 1).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert F.clamp(backend.tensor([1, 5]), max=3).tolist() == [1, 3]


def test_maximum_and_gelu_errors():
    with pytest.raises(td.ShapeError, match=r"maximum: shapes \(3,\) and \(4,\)"):
        F.maximum(td.zeros(3), td.zeros(4))
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(td.zeros(2), approximate="erf")
    with pytest.raises(ValueError, match="softplus: beta must be nonzero, got 0"):
        F.softplus(td.zeros(2), beta=0)


ALL_UNARY = [u[1] for u in UNARY] + [
    lambda x: F.where(x.data > 0, x, 0.5 * x),
    lambda x: F.maximum(x, 0.25),
    lambda x: F.minimum(-1, x),
]


def test_float32_stays_float32(backend):
    x32 = np.array([[-3.0, -0.5, 0.3], [0.7, 1.0, 2.9]], np.float32)
    for op in ALL_UNARY:
        x = backend.tensor(
            np.abs(x32) + 0.1 if op in (F.log, F.log1p, F.sqrt) else x32, requires_grad=True
        )
        y = op(x)
        y.sum().backward()
        assert y.dtype == np.float32 and x.grad.dtype == np.float32, op
        assert np.all(np.isfinite(backend.numpy(y))), op
        assert np.all(np.isfinite(backend.numpy(x.grad))), op


def test_integer_inputs_promote_to_float32_like_torch(backend):
    x = backend.tensor([0, 1, 2])
    for name in ["exp", "log1p", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "gelu",
                 "softplus", "elu"]:  # fmt: skip
        assert getattr(F, name)(x).dtype == np.float32, name
    assert F.relu(x).dtype == np.int64 and F.abs(backend.tensor([-2])).tolist() == [2]


def test_tensor_methods_and_nan_propagation(backend):
    x = backend.tensor([-1.0, np.nan, 2.0], requires_grad=True)
    for name in ["relu", "sigmoid", "tanh", "abs", "exp"]:
        assert np.isnan(backend.numpy(getattr(x, name)())[1]), name
    assert abs(x).tolist()[0] == 1.0
    y = F.relu(x)
    y.backward(td.ones(3, device=backend.name))
    if torch is not None:
        xt = torch.tensor([-1.0, np.nan, 2.0], requires_grad=True)
        torch.relu(xt).backward(torch.ones(3))
        np.testing.assert_array_equal(backend.numpy(x.grad), xt.grad.numpy())
