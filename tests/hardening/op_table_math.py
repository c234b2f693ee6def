"""Op-table entries: elementwise functions, arithmetic, reductions, softmax."""

from __future__ import annotations

import functools
import math

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st
from scipy import special

import tinydl as td
import tinydl.functional as F
from tests.hardening import op_refs as R
from tests.hardening.op_strategies import (
    BOOLS,
    MARGIN,
    Case,
    Op,
    array,
    broadcast,
    choice,
    dims,
    distinct_pair,
    elems,
    grid,
    kw,
    shapes,
    signed,
    unary,
)
from tinydl.backend import CPU, to_numpy
from tinydl.backend.kernels import dropout_ref

ENTRIES: list[Op] = []


def add(*ops):
    ENTRIES.extend(ops)


# ----------------------------------------------------------------------------- elementwise

_SQ2 = math.sqrt(2)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _softplus(x, beta, threshold):
    return np.where(x * beta > threshold, x, np.logaddexp(0, x * beta) / beta)


add(
    Op("exp", F.exp, np.exp, unary(elems(-5, 5))),
    Op("log", F.log, np.log, unary(elems(0.1, 10))),
    Op("log1p", F.log1p, np.log1p, unary(elems(-0.9, 10))),
    Op("sqrt", F.sqrt, np.sqrt, unary(elems(0.05, 10))),
    Op("abs", F.abs, np.abs, unary(elems(kinks=(0,))), kinks=True),
    Op("neg", F.neg, np.negative, unary()),
    Op("sin", F.sin, np.sin, unary(elems(-6, 6))),
    Op("cos", F.cos, np.cos, unary(elems(-6, 6))),
    Op("tanh", F.tanh, np.tanh, unary(elems(-5, 5))),
    Op("sigmoid", F.sigmoid, special.expit, unary(elems(-10, 10))),
    Op("erf", F.erf, special.erf, unary(elems(-5, 5))),
    Op("relu", F.relu, lambda x: np.maximum(x, 0), unary(elems(kinks=(0,))), kinks=True),
    Op(
        "add_relu",
        F.add_relu,
        lambda a, b: np.maximum(a + b, 0),
        broadcast(grid(), grid(offset=MARGIN / 2)),  # a + b at least MARGIN / 2 from the kink
        kinks=True,
    ),
    Op(
        "leaky_relu",
        lambda x, s: F.leaky_relu(x, s),
        lambda x, s: np.where(x > 0, x, s * x),
        unary(elems(kinks=(0,)), kw=kw(s=st.sampled_from([0.01, 0.25]))),
        kinks=True,
    ),
    Op(
        "elu",
        lambda x, alpha: F.elu(x, alpha),
        lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(x)),
        unary(elems(kinks=(0,)), kw=kw(alpha=st.sampled_from([1.0, 0.5]))),
        kinks=True,
    ),
    Op("gelu", F.gelu, lambda x: 0.5 * x * (1 + special.erf(x / _SQ2)), unary(elems(-5, 5))),
    Op(
        "gelu",
        lambda x: F.gelu(x, approximate="tanh"),
        _gelu_tanh,
        unary(elems(-5, 5)),
        variant="tanh",
    ),
    Op(
        "softplus",
        lambda x, beta: F.softplus(x, beta),
        lambda x, beta: _softplus(x, beta, 20.0),
        unary(elems(-8, 8), kw=kw(beta=st.sampled_from([0.5, 1.0, 2.0]))),
    ),
    Op(
        "softplus",
        lambda x: F.softplus(x, 1.0, threshold=1.0),
        lambda x: _softplus(x, 1.0, 1.0),
        unary(elems(-4, 4, kinks=(1.0,))),
        variant="threshold",
        kinks=True,
    ),
    Op(
        "cast",
        lambda x: F.cast(F.cast(x, np.float64), x.dtype),
        lambda x: x.copy(),
        unary(),
        variant="float64 and back",
    ),
    Op(
        "to_device",
        lambda x: F.to_device(F.to_device(x, CPU), x.device),
        lambda x: x.copy(),
        unary(),
        variant="to the cpu and back",
    ),
)


def _dropout(x, p, seed):
    # the documented CPU mask (dropout_ref): a key drawn from the generator, then a keyed hash
    # of each element's index against round(p * 2**32)
    key = np.random.default_rng(seed).integers(0, 2**32, size=2, dtype=np.uint32)
    keep = dropout_ref.keep_mask(key, x.size, dropout_ref.threshold(p)).reshape(x.shape)
    return x * (keep * (1.0 / (1.0 - p)))


@functools.cache
def _device_mask(device: str, shape: tuple, p: float, seed: int) -> np.ndarray:
    """The dropout mask (0 or 1/(1-p)) the op draws on ``device`` for ``seed``, after checking
    that the device keeps 1-p of 10^4 elements (within 5 sigma) and scales them by 1/(1-p)."""
    scale = 1.0 / (1.0 - p)

    def draw(size):
        ones = td.tensor(np.ones(size), device=device)
        mask = to_numpy(F.dropout(ones, p, True, generator=np.random.default_rng(seed)).data)
        assert np.isin(mask, [0.0, scale]).all(), f"dropout on {device}: values {np.unique(mask)}"
        return mask

    kept = (draw((100, 100)) != 0).mean()
    assert abs(kept - (1 - p)) <= 5 * math.sqrt(p * (1 - p) / 1e4), (
        f"dropout on {device} keeps {kept:.4f} of the elements with p = {p}"
    )
    return draw(shape)


def _dropout_on(b):
    # NOTE: a GPU draws its masks with cuRAND, not NumPy's generator: the reference there
    # multiplies by the device's own mask, whose keep rate and scale _device_mask checks.
    return lambda x, p, seed: x * _device_mask(b.name, x.shape, p, seed)


add(
    Op(
        "dropout",
        lambda x, p, seed: F.dropout(x, p, True, generator=np.random.default_rng(seed)),
        _dropout,
        unary(kw=kw(p=st.sampled_from([0.1, 0.5, 0.9]), seed=st.integers(0, 2**16))),
        device_ref=_dropout_on,
    )
)

# ----------------------------------------------------------------------------- binary


@st.composite
def _where(draw):
    s = draw(st.sampled_from([((), (3,), (2, 1))]) | _three_shapes())
    cond = draw(array(s[0], BOOLS)).astype(bool)
    return Case((draw(array(s[1])), draw(array(s[2]))), {"cond": cond})


def _three_shapes():
    return hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4).map(
        lambda r: r.input_shapes
    )


@st.composite
def _pow_scalar(draw, exponents, elements):
    c = draw(st.sampled_from(exponents))
    return Case((draw(array(draw(shapes()), elements)),), {"c": c})


@st.composite
def _clamp(draw, which):
    x = draw(array(draw(shapes()), grid()))
    lo, hi = (draw(grid(-2, 2, offset=MARGIN / 2).strategy) for _ in range(2))
    lo, hi = (min(lo, hi), max(lo, hi)) if which != "min>max" else (max(lo, hi) + 1, min(lo, hi))
    bounds = {"min": {"min": lo}, "max": {"max": hi}}.get(which, {"min": lo, "max": hi})
    return Case((x,), bounds)


def _clip(x, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    return np.minimum(
        np.maximum(x, -np.inf if min is None else min), np.inf if max is None else max
    )


add(
    Op("add", F.add, np.add, broadcast(elems(), elems())),
    Op("sub", F.sub, np.subtract, broadcast(elems(), elems())),
    Op("mul", F.mul, np.multiply, broadcast(elems(), elems())),
    Op("div", F.div, np.divide, broadcast(elems(), signed(0.5, 3))),
    Op(
        "pow",
        lambda x, c: F.pow(x, c),
        lambda x, c: x**c,
        _pow_scalar([2, 3, -1, 0], signed(0.5, 2)),
        variant="int exponent",
    ),
    Op(
        "pow",
        lambda x, c: F.pow(x, c),
        lambda x, c: x**c,
        _pow_scalar([0.5, 1.5, -2.5], elems(0.25, 3)),
        variant="float exponent",
    ),
    Op("pow", F.pow, np.power, broadcast(elems(0.5, 3), elems(-2, 2)), variant="tensor"),
    Op(
        "pow",
        lambda x: F.pow(2.5, x),
        lambda x: 2.5**x,
        unary(),
        variant="number base",
    ),
    Op("maximum", F.maximum, np.maximum, distinct_pair(), kinks=True),
    Op("maximum", F.maximum, np.maximum, distinct_pair(False), variant="0-d", kinks=True),
    Op("minimum", F.minimum, np.minimum, distinct_pair(), kinks=True),
    Op("minimum", F.minimum, np.minimum, distinct_pair(False), variant="0-d", kinks=True),
    Op(
        "where",
        lambda a, b, cond: F.where(cond, a, b),
        lambda a, b, cond: np.where(cond, a, b),
        _where(),
    ),  # fmt: skip
)
for _which in ("both", "min", "max", "min>max"):
    add(Op("clamp", F.clamp, _clip, _clamp(_which), variant=_which, kinks=True))
add(Op("clip", F.clip, _clip, _clamp("both"), kinks=True))

# ----------------------------------------------------------------------------- reductions


@st.composite
def _reduce_case(draw, elements=None, unique=False, min_side=1, min_dims=0, correction=False):
    s = draw(shapes(min_dims=min_dims, min_side=min_side))
    x = draw(array(s, elements, unique))
    kw = {"dim": draw(dims(len(s))), "keepdim": draw(st.booleans())}
    if correction:
        kw["correction"] = draw(st.sampled_from([0, 1]))
    return Case((x,), kw)


@st.composite
def _one_dim(draw):
    s = draw(shapes())
    x = draw(array(s, grid(), unique=True))
    return Case((x,), {"dim": draw(dims(len(s), none=False, tuples=False)),
                       "keepdim": draw(st.booleans())})  # fmt: skip


def _np_reduce(fn):
    return lambda x, dim, keepdim, **kw: fn(x, axis=R.axes(dim, x.ndim), keepdims=keepdim, **kw)


def _extreme_dim(fn):
    def ref(x, dim, keepdim):
        if x.ndim == 0:
            return x.copy()
        return fn(x, axis=dim % x.ndim, keepdims=keepdim)

    return ref


def _logsumexp(x, dim, keepdim):
    y = special.logsumexp(x, axis=R.axes(dim, x.ndim), keepdims=keepdim)
    return y.reshape(()) if x.ndim == 0 else y  # SciPy makes a 0-d input 1-d with keepdims


def _var(x, dim, keepdim, correction):
    return np.var(x, axis=R.axes(dim, x.ndim), ddof=correction, keepdims=keepdim)


def _std(x, dim, keepdim, correction):
    return np.sqrt(_var(x, dim, keepdim, correction))


_UNIQUE = grid()
_ZEROS = choice([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.25])

add(
    Op("sum", F.sum, _np_reduce(np.sum), _reduce_case()),
    Op("mean", F.mean, _np_reduce(np.mean), _reduce_case()),
    Op("max", F.max, np.max, unary(grid(), unique=True), variant="all", kinks=True),
    Op(
        "max",
        lambda x, dim, keepdim: F.max(x, dim, keepdim).values,
        _extreme_dim(np.max),
        _one_dim(),
        variant="dim",
        kinks=True,
    ),
    Op("min", F.min, np.min, unary(grid(), unique=True), variant="all", kinks=True),
    Op(
        "min",
        lambda x, dim, keepdim: F.min(x, dim, keepdim).values,
        _extreme_dim(np.min),
        _one_dim(),
        variant="dim",
        kinks=True,
    ),
    Op("var", F.var, _var, _reduce_case(_UNIQUE, True, 2, 1, correction=True)),
    Op("std", F.std, _std, _reduce_case(_UNIQUE, True, 2, 1, correction=True)),
    Op(
        "logsumexp",
        F.logsumexp,
        _logsumexp,
        _reduce_case(elems(-20, 20)),
    ),
    Op("prod", F.prod, _np_reduce(np.prod), _reduce_case(elems(0.5, 1.5))),
    Op("prod", F.prod, _np_reduce(np.prod), _reduce_case(_ZEROS), variant="zeros"),
    Op("softmax", F.softmax, lambda x, dim: special.softmax(x, axis=R.axes(dim, x.ndim)),
       _reduce_case(elems(-10, 10)).map(lambda c: Case(c.arrays, {"dim": _int_dim(c)}))),
    Op("log_softmax", F.log_softmax,
       lambda x, dim: special.log_softmax(x, axis=R.axes(dim, x.ndim)),
       _reduce_case(elems(-10, 10)).map(lambda c: Case(c.arrays, {"dim": _int_dim(c)}))),
)  # fmt: skip


def _int_dim(case):
    d = case.kw["dim"]
    return -1 if d is None else d if isinstance(d, int) else d[0]


@st.composite
def _norm_case(draw, p):
    s = draw(shapes())
    if p in (math.inf, -math.inf):  # distinct magnitudes: the norm is reached at one element
        mags = draw(array(s, grid(MARGIN, 3), unique=True))
        x = mags * draw(array(s, choice([-1.0, 1.0])))
    else:
        x = draw(array(s, elems(kinks=(0,))))
    return Case((x,), {"p": p, "dim": draw(dims(len(s))), "keepdim": draw(st.booleans())})


for _p in (2, "fro", 1, math.inf, -math.inf, 0, 3, 1.5):
    add(
        Op("norm", F.norm, R.norm, _norm_case(_p), variant=f"p={_p}", kinks=_p != 2 and _p != "fro")
    )
