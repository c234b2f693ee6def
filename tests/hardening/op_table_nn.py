"""Op-table entries: convolution, pooling, normalization and losses."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.hardening import op_refs as R
from tests.hardening.op_strategies import (
    REDUCTION,
    Case,
    Op,
    array,
    elems,
    grid,
    ints,
    shapes,
)

ENTRIES: list[Op] = []


def add(*ops):
    ENTRIES.extend(ops)


# ----------------------------------------------------------------------------- conv and pool


@st.composite
def _window(draw, max_kernel=3, pool=False):
    """kernel, stride, padding, dilation pairs and an input size that fits them."""
    k = tuple(draw(st.integers(1, max_kernel)) for _ in range(2))
    s = tuple(draw(st.integers(1, 2)) for _ in range(2))
    d = (1, 1) if pool else tuple(draw(st.integers(1, 2)) for _ in range(2))
    p = tuple(draw(st.integers(0, ki // 2 if pool else 1)) for ki in k)
    hw = tuple(
        draw(st.integers(max(1, di * (ki - 1) + 1 - 2 * pi), 6)) for ki, di, pi in zip(k, d, p)
    )
    return k, s, p, d, hw


@st.composite
def _conv(draw):
    k, s, p, d, (h, w) = draw(_window())
    groups = draw(st.integers(1, 2))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    shape = (n, cin, h, w) if not draw(st.booleans()) else (cin, h, w)
    arrays = [draw(array(shape)), draw(array((cout, cin // groups) + k))]
    if draw(st.booleans()):
        arrays.append(draw(array((cout,))))
    return Case(tuple(arrays), {"stride": s, "padding": p, "dilation": d, "groups": groups})


@st.composite
def _im2col(draw, adjoint):
    k, s, p, d, (h, w) = draw(_window())
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kw = {"kernel_size": k, "stride": s, "padding": p, "dilation": d}
    if not adjoint:
        return Case((draw(array((n, c, h, w))),), kw)
    oh, ow = R.out_size(h, k[0], s[0], p[0], d[0]), R.out_size(w, k[1], s[1], p[1], d[1])
    cols = draw(array((c * k[0] * k[1], n * oh * ow)))
    return Case((cols,), {"x_shape": (n, c, h, w), **kw})


@st.composite
def _pool(draw, unique):
    k, s, p, _, (h, w) = draw(_window(pool=True))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    shape = (n, c, h, w) if draw(st.booleans()) else (c, h, w)
    x = draw(array(shape, grid() if unique else None, unique=unique))
    stride = None if draw(st.booleans()) else s
    return Case((x,), {"kernel_size": k, "stride": stride, "padding": p})


@st.composite
def _adaptive(draw):
    n, c, h, w = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
                  draw(st.integers(1, 7)), draw(st.integers(1, 7)))  # fmt: skip
    oh, ow = draw(st.integers(1, h)), draw(st.integers(1, w))
    size = draw(st.sampled_from([(oh, ow), (None, ow), (oh, None), oh if oh <= w else (oh, ow)]))
    return Case((draw(array((n, c, h, w))),), {"output_size": size})


def _pool_ref(ref):
    return lambda x, kernel_size, stride, padding: ref(x, kernel_size, stride, padding)


add(
    Op("conv2d", F.conv2d, R.conv2d, _conv(), f32_grad=(5e-4, 5e-4)),
    Op(
        "im2col",
        F.im2col,
        lambda x, kernel_size, **kw: R.im2col(x, kernel_size, **kw),
        _im2col(False),
    ),
    Op(
        "col2im",
        F.col2im,
        lambda c, x_shape, kernel_size, **kw: R.col2im(c, x_shape, kernel_size, **kw),
        _im2col(True),
    ),
    Op("max_pool2d", F.max_pool2d, _pool_ref(R.max_pool2d), _pool(True), kinks=True),
    Op("avg_pool2d", F.avg_pool2d, _pool_ref(R.avg_pool2d), _pool(False)),
    Op("adaptive_avg_pool2d", F.adaptive_avg_pool2d, R.adaptive_avg_pool2d, _adaptive()),
)

# ----------------------------------------------------------------------------- normalization


@st.composite
def _batch_norm(draw, training):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rest = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if training and n * int(np.prod(rest)) < 2:
        n = 2
    arrays = [draw(array((n, c) + rest, grid(), unique=training))]
    affine = draw(st.booleans())
    if affine:
        arrays += [draw(array((c,))), draw(array((c,)))]
    kw = {"affine": affine}
    if not training:
        kw["mean"] = draw(array((c,), elems(-1, 1)))
        kw["var"] = draw(array((c,), elems(0.25, 2)))
    return Case(tuple(arrays), kw)


def _bn_fn(training):
    def fn(x, *wb, affine, mean=None, var=None):
        w, b = wb if affine else (None, None)
        return F.batch_norm(x, mean, var, w, b, training=training, eps=1e-5)

    return fn


def _bn_ref(training):
    def ref(x, *wb, affine, mean=None, var=None):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if training:
            ax = (0,) + tuple(range(2, x.ndim))
            mean, var = x.mean(axis=ax, keepdims=True), x.var(axis=ax, keepdims=True)
        else:
            mean, var = mean.reshape(shape), var.reshape(shape)
        y = (x - mean) / np.sqrt(var + 1e-5)
        return y * wb[0].reshape(shape) + wb[1].reshape(shape) if affine else y

    return ref


@st.composite
def _batch_norm_relu(draw, training):
    """``_batch_norm`` cases with the affine, whose bias puts each channel's ReLU kink in a gap
    between its normalized values (at least 0.05 from each: finite differences straddle no
    kink), inside the values when a gap that wide exists, so both sides of the mask are used."""
    case = draw(_batch_norm(training).filter(lambda c: c.kw["affine"]))
    x, w, b = case.arrays
    stats = {k: v for k, v in case.kw.items() if k in ("mean", "var")}
    ref = _bn_ref(training)(x, np.ones_like(w), np.zeros_like(b), affine=True, **stats)
    b = b.copy()
    for ch in range(x.shape[1]):
        v = np.unique(np.take(ref, ch, axis=1) * w[ch])
        mids, half = (v[1:] + v[:-1]) / 2, (v[1:] - v[:-1]) / 2
        inner = mids[half >= 0.05]
        b[ch] = -(inner[len(inner) // 2] if inner.size else v[-1] + 1.0)
    return Case((x, w, b), case.kw)


def _bnr_fn(training):
    def fn(x, w, b, affine, mean=None, var=None):
        return F.batch_norm_relu(x, mean, var, w, b, training=training, eps=1e-5)

    return fn


def _bnr_ref(training):
    return lambda *args, **kw: np.maximum(_bn_ref(training)(*args, **kw), 0)


@st.composite
def _layer_norm(draw):
    s = draw(shapes(min_dims=1, large=False).map(lambda t: t[:-1] + (max(t[-1], 2),)))
    k = draw(st.integers(1, len(s)))
    normalized = s[len(s) - k :]
    arrays = [draw(array(s, grid(), unique=True))]
    if draw(st.booleans()):
        arrays += [draw(array(normalized)), draw(array(normalized))]
    return Case(tuple(arrays), {"normalized_shape": normalized})


def _ln_fn(x, *wb, normalized_shape):
    return F.layer_norm(x, normalized_shape, *wb)


def _ln_ref(x, *wb, normalized_shape):
    ax = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    y = (x - x.mean(axis=ax, keepdims=True)) / np.sqrt(x.var(axis=ax, keepdims=True) + 1e-5)
    return y * wb[0] + wb[1] if wb else y


add(
    Op("batch_norm", _bn_fn(True), _bn_ref(True), _batch_norm(True), variant="training",
       f32=(1e-4, 1e-4), f32_grad=(2e-3, 2e-3)),
    Op("batch_norm", _bn_fn(False), _bn_ref(False), _batch_norm(False), variant="eval"),
    Op("batch_norm_relu", _bnr_fn(True), _bnr_ref(True), _batch_norm_relu(True),
       variant="training", kinks=True, f32=(1e-4, 1e-4), f32_grad=(2e-3, 2e-3)),
    Op("batch_norm_relu", _bnr_fn(False), _bnr_ref(False), _batch_norm_relu(False),
       variant="eval", kinks=True),
    Op("layer_norm", _ln_fn, _ln_ref, _layer_norm(), f32=(1e-4, 1e-4), f32_grad=(2e-3, 2e-3)),
)  # fmt: skip

# ----------------------------------------------------------------------------- losses


@st.composite
def _class_case(draw, probs=False, ignore=True):
    c = draw(st.integers(2, 5))
    n = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(c,), (n, c), (n, c, draw(st.integers(1, 3)))]))
    x = draw(array(shape, elems(-5, 5)))
    kw = {"reduction": draw(REDUCTION)}
    if draw(st.booleans()):
        kw["weight"] = draw(array((c,), grid(0.25, 2)))
    if probs:
        return Case((x, draw(array(shape, elems(0, 1)))), kw)
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = draw(array(tshape, ints(-1 if ignore else 0, c - 1))).astype(np.int64)
    t[t == -1] = -100  # the default ignore_index
    t.reshape(-1)[:1] = draw(st.integers(0, c - 1))  # at least one target counts
    kw["target"] = t
    return Case((x,), kw)


def _with_smoothing(strategy):
    return st.tuples(strategy, st.sampled_from([0.0, 0.1])).map(
        lambda t: Case(t[0].arrays, {**t[0].kw, "label_smoothing": t[1]})
    )


def _ce_index(x, target, **kw):
    return F.cross_entropy(x, target, **kw)


def _ce_probs(x, t, **kw):
    return F.cross_entropy(x, t, **kw)


@st.composite
def _pair_loss(draw, kink):
    s = draw(shapes())
    x = draw(array(s, grid() if kink else None))
    t = x + draw(array(s, grid(-2, 2, nonzero=True))) if kink else draw(array(s))
    return Case((x, t), {"reduction": draw(REDUCTION)})


@st.composite
def _bce(draw):
    s = draw(shapes())
    arrays = [draw(array(s, elems(-10, 10))), draw(array(s, elems(0, 1)))]
    kw = {"reduction": draw(REDUCTION)}
    if s and draw(st.booleans()):
        arrays.append(draw(array(s[-1:], elems(0.25, 4))))
    if draw(st.booleans()):
        kw["weight"] = draw(array(draw(st.sampled_from([s, s[-1:]])), elems(0, 2)))
    return Case(tuple(arrays), kw)


def _bce_fn(x, t, pw=None, weight=None, reduction="mean"):
    w = None if weight is None else td.Tensor(weight.astype(x.dtype))
    return F.binary_cross_entropy_with_logits(x, t, w, pw, reduction)


def _reduce_ref(fn):
    return lambda x, t, reduction: R.reduce(fn(x, t), reduction)


add(
    Op("cross_entropy", _ce_index, R.cross_entropy_index, _with_smoothing(_class_case()),
       variant="class indices"),
    Op("cross_entropy", _ce_probs, R.cross_entropy_probs, _with_smoothing(_class_case(True)),
       variant="probabilities"),
    Op("nll_loss", lambda x, target, **kw: F.nll_loss(x, target, **kw), R.nll_loss,
       _class_case()),
    Op("mse_loss", F.mse_loss, _reduce_ref(lambda x, t: (x - t) ** 2), _pair_loss(False)),
    Op("l1_loss", F.l1_loss, _reduce_ref(lambda x, t: np.abs(x - t)), _pair_loss(True),
       kinks=True),
    Op("binary_cross_entropy_with_logits", _bce_fn, R.bce_with_logits, _bce()),
)  # fmt: skip
