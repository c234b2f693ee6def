"""Plain NumPy/SciPy references for the op table: float64, written for clarity, not speed.

Each reference takes the op's float64 input arrays and its keyword arguments and returns what
PyTorch's documented formula gives. The window ops (conv, pool, im2col) are written with
explicit loops over output positions so that they share no code with tinydl's kernels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = [
    "axes",
    "im2col",
    "col2im",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "cross_entropy_index",
    "cross_entropy_probs",
    "nll_loss",
    "bce_with_logits",
    "norm",
    "reduce",
    "out_size",
]


def axes(dim, ndim):
    """NumPy's ``axis`` for tinydl's ``dim``: None for all (and for 0-d), else a tuple."""
    if dim is None or ndim == 0:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(d % ndim for d in dims))


def reduce(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (loss.size if denom is None else denom)


def out_size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def im2col(x, kernel, stride=1, padding=0, dilation=1):
    """Rows ``(c*KH + i)*KW + j``, columns ``(n*OH + oh)*OW + ow`` (zero padding)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.zeros((c * kh * kw, n * oh * ow))
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                patch = xp[:, ci, i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                           j * dw : j * dw + sw * (ow - 1) + 1 : sw]  # fmt: skip
                cols[row] = patch.reshape(-1)
    return cols


def col2im(cols, x_shape, kernel, stride=1, padding=0, dilation=1):
    """The adjoint of :func:`im2col`: each column entry added back to its pixel."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    n, c, h, w = x_shape
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = cols[(ci * kh + i) * kw + j].reshape(n, oh, ow)
                xp[:, ci, i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                   j * dw : j * dw + sw * (ow - 1) + 1 : sw] += row  # fmt: skip
    return xp[:, :, ph : ph + h, pw : pw + w]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct cross-correlation, one output pixel at a time."""
    unbatched = x.ndim == 3
    x = x[None] if unbatched else x
    (sh, sw), (ph, pw), (dh, dw) = map(_pair, (stride, padding, dilation))
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n, cout, oh, ow))
    per_group = cout // groups
    for o in range(cout):
        g = o // per_group
        chans = slice(g * cin_g, (g + 1) * cin_g)
        for i in range(oh):
            for j in range(ow):
                window = xp[:, chans, i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                            j * sw : j * sw + dw * (kw - 1) + 1 : dw]  # fmt: skip
                out[:, o, i, j] = (window * weight[o]).sum(axis=(1, 2, 3))
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out[0] if unbatched else out


def _pool(x, kernel, stride, padding, fill, fn):
    unbatched = x.ndim == 3
    x = x[None] if unbatched else x
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = _pair(kernel if stride is None else stride)
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = fn(xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw], (2, 3))
    return out[0] if unbatched else out


def max_pool2d(x, kernel, stride=None, padding=0):
    return _pool(x, kernel, stride, padding, -np.inf, lambda v, ax: v.max(axis=ax))


def avg_pool2d(x, kernel, stride=None, padding=0):
    """Zero padding counts in the mean (PyTorch's ``count_include_pad=True``)."""
    return _pool(x, kernel, stride, padding, 0.0, lambda v, ax: v.mean(axis=ax))


def adaptive_avg_pool2d(x, output_size):
    unbatched = x.ndim == 3
    x = x[None] if unbatched else x
    h, w = x.shape[-2:]
    oh, ow = _pair(output_size)
    oh, ow = (h if oh is None else oh), (w if ow is None else ow)
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        r0, r1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
        for j in range(ow):
            c0, c1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out[0] if unbatched else out


def _class_last(x, dim):
    return np.moveaxis(x, dim, -1)


def cross_entropy_index(x, target, weight=None, ignore_index=-100, reduction="mean",
                        label_smoothing=0.0):  # fmt: skip
    """PyTorch's formula: ``(1 - ls) * nll + ls / C * sum_c w_c (-logp_c)``, mean divided by
    the summed weights of the non-ignored targets."""
    dim = 0 if x.ndim == 1 else 1
    logp = _class_last(special.log_softmax(x, axis=dim), dim)
    c = logp.shape[-1]
    w = np.ones(c) if weight is None else weight
    keep = target != ignore_index
    safe = np.where(keep, target, 0)
    picked = np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    nll = -w[safe] * picked * keep
    smooth = -(logp * w).sum(-1) * keep
    loss = (1 - label_smoothing) * nll + label_smoothing / c * smooth
    return reduce(loss, reduction, (w[safe] * keep).sum())


def cross_entropy_probs(x, target, weight=None, reduction="mean", label_smoothing=0.0):
    dim = 0 if x.ndim == 1 else 1
    logp = _class_last(special.log_softmax(x, axis=dim), dim)
    t = _class_last(target, dim)
    c = logp.shape[-1]
    t = t * (1 - label_smoothing) + label_smoothing / c
    w = np.ones(c) if weight is None else weight
    return reduce(-(t * w * logp).sum(-1), reduction, x.size // c)


def nll_loss(x, target, weight=None, ignore_index=-100, reduction="mean"):
    dim = 0 if x.ndim == 1 else 1
    logp = _class_last(x, dim)
    c = logp.shape[-1]
    w = np.ones(c) if weight is None else weight
    keep = target != ignore_index
    safe = np.where(keep, target, 0)
    picked = np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    return reduce(-w[safe] * picked * keep, reduction, (w[safe] * keep).sum())


def bce_with_logits(x, t, pos_weight=None, weight=None, reduction="mean"):
    """``-w [pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]`` through SciPy's log_expit."""
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * t * special.log_expit(x) + (1 - t) * special.log_expit(-x))
    return reduce(loss if weight is None else loss * weight, reduction)


def norm(x, p=2, dim=None, keepdim=False):
    ax = axes(dim, x.ndim)
    a = np.abs(x)
    if p in (2, "fro"):
        return np.sqrt((x * x).sum(axis=ax, keepdims=keepdim))
    if p == math.inf:
        return a.max(axis=ax, keepdims=keepdim)
    if p == -math.inf:
        return a.min(axis=ax, keepdims=keepdim)
    if p == 0:
        return (x != 0).sum(axis=ax, keepdims=keepdim).astype(np.float64)
    return (a**p).sum(axis=ax, keepdims=keepdim) ** (1 / p)
