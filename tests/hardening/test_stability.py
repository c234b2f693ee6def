"""Numerical stability: the exp/log ops at extreme inputs, NaN and Inf, constant batches, and
Adam on zero gradients.

Every value set runs with warnings turned into errors: a stable op neither overflows nor warns.
References are SciPy's (softmax, log_softmax, logsumexp, expit, log_expit) in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl import optim

MAGNITUDES = [501.0, 1001.2, 13437.7, 4988429.2, 1e20]
DTYPES = [np.float32, np.float64]


def _value_sets() -> dict:
    sets = {}
    for v in MAGNITUDES:
        sets[f"+-{v:g}"] = np.array(
            [[v, -v, 0.0, 1.0], [-v, -v, 1.0, 0.5], [v, v, -v, 2.0], [v, 1.0, -1.0, v]]
        )
    sets["[[-1000, 1]]"] = np.array([[-1000.0, 1.0]])
    return sets


VALUE_SETS = _value_sets()


def _targets(x):
    return np.arange(x.shape[0]) % x.shape[1]


def _probs(x):  # binary targets 0, 1 and in between
    return np.resize([0.0, 1.0, 0.3, 0.75], x.shape)


def _softmax_grad(x, g):
    s = special.softmax(x, axis=-1)
    return s * (g - (g * s).sum(-1, keepdims=True))


def _ce(x, smoothing):
    logp = special.log_softmax(x, axis=-1)
    nll = -logp[np.arange(len(x)), _targets(x)]
    return ((1 - smoothing) * nll - smoothing * logp.mean(-1)).mean()


def _ce_grad(x, g, smoothing):
    onehot = np.eye(x.shape[1])[_targets(x)]
    want = (1 - smoothing) * onehot + smoothing / x.shape[1]
    return g * (special.softmax(x, axis=-1) - want) / len(x)


def _bce(x):
    t = _probs(x)
    return -(t * special.log_expit(x) + (1 - t) * special.log_expit(-x)).mean()


# name: (tinydl op, SciPy forward, gradient for an upstream gradient g)
OPS = {
    "softmax": (
        lambda t: F.softmax(t, -1),
        lambda x: special.softmax(x, axis=-1),
        _softmax_grad,
    ),
    "log_softmax": (
        lambda t: F.log_softmax(t, -1),
        lambda x: special.log_softmax(x, axis=-1),
        lambda x, g: g - special.softmax(x, axis=-1) * g.sum(-1, keepdims=True),
    ),
    "logsumexp": (
        lambda t: F.logsumexp(t, -1),
        lambda x: special.logsumexp(x, axis=-1),
        lambda x, g: g[:, None] * special.softmax(x, axis=-1),
    ),
    "cross_entropy": (
        lambda t: F.cross_entropy(t, td.tensor(_targets(t.data))),
        lambda x: _ce(x, 0.0),
        lambda x, g: _ce_grad(x, g, 0.0),
    ),
    "cross_entropy(label_smoothing=0.1)": (
        lambda t: F.cross_entropy(t, td.tensor(_targets(t.data)), label_smoothing=0.1),
        lambda x: _ce(x, 0.1),
        lambda x, g: _ce_grad(x, g, 0.1),
    ),
    "sigmoid": (F.sigmoid, special.expit, lambda x, g: g * special.expit(x) * special.expit(-x)),
    "softplus": (F.softplus, lambda x: -special.log_expit(-x), lambda x, g: g * special.expit(x)),
    "binary_cross_entropy_with_logits": (
        lambda t: F.binary_cross_entropy_with_logits(t, td.tensor(_probs(t.data)).to(t.dtype)),
        _bce,
        lambda x, g: g * (special.expit(x) - _probs(x)) / x.size,
    ),
}
CASE_COUNT = len(OPS) * len(VALUE_SETS) * len(DTYPES)


def _close(got, want, dtype, what):
    """Within a few ulps of ``dtype``: relative to each value, or to the largest value for the
    tiny ones (``y (1 - y)`` of ``y = sigmoid(501)`` is 0, SciPy's exact value 3e-219).
    References round to ``dtype`` first (exp(-501) is 0 in float32)."""
    want = np.asarray(want, np.float64).astype(dtype).astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    eps = float(np.finfo(dtype).eps)
    atol = max(float(np.finfo(dtype).tiny), 4 * eps * float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(
        np.asarray(got, np.float64), want, rtol=rtol, atol=atol, err_msg=what
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("values", list(VALUE_SETS))
@pytest.mark.parametrize("name", list(OPS))
def test_extreme_values_are_finite_and_match_scipy(name, values, dtype):
    op, ref, ref_grad = OPS[name]
    x = VALUE_SETS[values].astype(dtype)
    x64 = x.astype(np.float64)  # the reference sees the same (rounded) inputs
    want = ref(x64)
    upstream = np.random.default_rng(0).standard_normal(np.shape(want)).astype(dtype)
    want_grad = ref_grad(x64, upstream.astype(np.float64))
    t = td.tensor(x, requires_grad=True)
    with warnings.catch_warnings(), np.errstate(over="warn", divide="warn", invalid="warn"):
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        out = op(t)
        out.backward(td.tensor(upstream))
    assert out.dtype == t.grad.dtype == np.dtype(dtype)
    assert np.isfinite(out.data).all(), f"{name} at {values}: {out.data}"
    assert np.isfinite(t.grad.data).all(), f"{name} at {values}: gradient {t.grad.data}"
    _close(out.data, want, dtype, f"{name} forward at {values}")
    _close(t.grad.data, want_grad, dtype, f"{name} gradient at {values}")


# ----------------------------------------------------------------------------- NaN and Inf

SPECIAL = np.array(
    [
        [np.nan, 1.0, 2.0, 0.0],
        [np.inf, 1.0, 2.0, 0.0],
        [-np.inf, 1.0, 2.0, 0.0],
        [np.inf, np.inf, 0.0, 1.0],
        [-np.inf, -np.inf, -np.inf, -np.inf],
        [np.inf, -np.inf, 0.0, 1.0],
        [np.nan, np.inf, -np.inf, 1.0],
        [0.5, -1.0, 2.0, 3.0],
    ]
)

ROWWISE = {"softmax", "log_softmax", "logsumexp", "cross_entropy"}  # a row shares one gradient
# Per-element (or per-row, reduction "none") forms of the ops above, with SciPy's forward.
ROW_OPS = {
    "softmax": (lambda t: F.softmax(t, -1), lambda x: special.softmax(x, axis=-1)),
    "log_softmax": (lambda t: F.log_softmax(t, -1), lambda x: special.log_softmax(x, axis=-1)),
    "logsumexp": (lambda t: F.logsumexp(t, -1), lambda x: special.logsumexp(x, axis=-1)),
    "cross_entropy": (
        lambda t: F.cross_entropy(t, td.tensor(_targets(t.data)), reduction="none"),
        lambda x: -special.log_softmax(x, axis=-1)[np.arange(len(x)), _targets(x)],
    ),
    "sigmoid": (F.sigmoid, special.expit),
    "softplus": (F.softplus, lambda x: -special.log_expit(-x)),
    "binary_cross_entropy_with_logits": (
        lambda t: F.binary_cross_entropy_with_logits(
            t, td.tensor(_probs(t.data)).to(t.dtype), reduction="none"
        ),
        lambda x: -(_probs(x) * special.log_expit(x) + (1 - _probs(x)) * special.log_expit(-x)),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(ROW_OPS))
def test_nan_and_inf_propagate_like_scipy(name, dtype):
    op, ref = ROW_OPS[name]
    x = SPECIAL.astype(dtype)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the reference itself computes inf - inf here
        want = ref(x.astype(np.float64))
    t = td.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf may warn, as in NumPy
        out = op(t)
        out.backward(td.ones_like(out))
    got = out.data.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN places")
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)], err_msg=name)
    finite = np.isfinite(want)
    _close(got[finite], want[finite], dtype, f"{name}: finite entries")
    # a NaN input makes its own gradient NaN and leaves the finite row alone
    grad = t.grad.data
    for i, row in enumerate(x):
        nan_in = np.isnan(row)
        if nan_in.any():
            assert np.isnan(grad[i] if name in ROWWISE else grad[i][nan_in]).all(), (name, i)
    assert np.isfinite(grad[-1]).all(), f"{name}: NaN or Inf leaked into a finite row"


# ----------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("value", [0.0, 3.7, -1e4, 1234.5678])
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 3, 3)])
def test_batch_norm_of_a_constant_batch_is_beta(shape, value, dtype):
    x = td.tensor(np.full(shape, value, dtype), requires_grad=True)
    gamma = td.tensor(np.array([0.5, 2.0, -1.5], dtype), requires_grad=True)
    beta = td.tensor(np.array([0.25, -3.0, 7.0], dtype), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.batch_norm(x, None, None, gamma, beta, training=True)
        out.backward(td.ones_like(out))
    expected = np.broadcast_to(beta.data.reshape((1, 3) + (1,) * (len(shape) - 2)), shape)
    # the batch mean is exact up to summation rounding, which the 1/sqrt(eps) scale magnifies
    ulp = float(np.spacing(np.abs(np.asarray(value, dtype))))
    tol = 16 * ulp / np.sqrt(1e-5) * 2.0 + float(np.finfo(dtype).eps) * 8
    np.testing.assert_allclose(out.data, expected, rtol=0, atol=tol)
    for g in (x.grad, gamma.grad, beta.grad):
        assert np.isfinite(g.data).all()
    np.testing.assert_array_equal(beta.grad.data, np.full(3, np.prod(shape) / 3, dtype))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_batch_norm_with_one_value_per_channel_refuses_to_train(shape):
    x = td.randn(*shape)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(x, None, None, training=True)
    layer = nn.BatchNorm2d(3) if len(shape) == 4 else nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(x)
    layer.eval()  # evaluation uses the running statistics: one value is fine
    assert np.isfinite(layer(x).data).all()
    out = F.batch_norm(td.randn(2, *shape[1:]), None, None, training=True)  # two values train
    assert np.isfinite(out.data).all()


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.Adam(p),
        lambda p: optim.Adam(p, amsgrad=True),
        lambda p: optim.Adam(p, weight_decay=0.1),
        lambda p: optim.Adam(p, maximize=True),
        lambda p: optim.AdamW(p),
        lambda p: optim.RMSprop(p, centered=True),
        lambda p: optim.Adagrad(p),
    ],
    ids=[
        "Adam",
        "Adam-amsgrad",
        "Adam-weight_decay",
        "Adam-maximize",
        "AdamW",
        "RMSprop",
        "Adagrad",
    ],  # fmt: skip
)
def test_1000_steps_on_zero_gradients_never_make_nan(make, dtype):
    start = np.array([1.0, -2.0, 0.0, 3e-3], dtype)
    p = td.Parameter(td.tensor(start.copy()))
    opt = make([p])
    decays = opt.param_groups[0].get("weight_decay", 0) != 0 or isinstance(opt, optim.AdamW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(1000):
            p.grad = td.zeros(4, dtype=dtype)
            opt.step()
            assert np.isfinite(p.data).all(), f"step {step + 1}: {p.data}"
    for key, value in opt.state[p].items():
        assert np.isfinite(np.asarray(value, np.float64)).all(), key
    if not decays:  # a zero gradient is no step at all
        np.testing.assert_array_equal(p.data, start)
