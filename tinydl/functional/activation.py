"""Softmax and log-softmax along a dimension.

Both subtract the maximum before ``exp``, so logits of any magnitude (``[-1000, 1]``, ``+-1e20``)
give exact results without overflow.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ._util import normalize_dim

__all__ = ["softmax", "log_softmax"]


def _shifted(x, axis, finite=False):
    """``x - max(x)`` along ``axis`` (a fresh array): every entry <= 0, the largest exactly 0.
    With ``finite``, an infinite or NaN maximum is replaced by 0 (``x`` itself is returned)."""
    # NOTE: with logits like +-1e308 the difference overflows to -inf, whose exp is the exact 0.
    with np.errstate(over="ignore", invalid="ignore"):
        m = x.max(axis=axis, keepdims=True)
        if finite:
            m = get_array_module(x).where(get_array_module(x).isfinite(m), m, 0).astype(x.dtype)
        return x - m


def log_softmax_array(x, axis):
    """Stable log-softmax of a raw array (shared with the fused cross-entropy).

    Infinities follow SciPy's ``log_softmax``: next to a ``+inf`` logit the finite entries are
    ``-inf`` (the ``+inf`` one is NaN), and a row of ``-inf`` is NaN."""
    xp = get_array_module(x)
    # NOTE: an infinite max is not subtracted (inf - inf would make every entry NaN).
    z = _shifted(x, axis, finite=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        z -= xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
    return z


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        if x.size == 0:  # max() refuses an empty axis
            y = x.copy()
        else:
            y = get_array_module(x).exp(_shifted(x, dim))
            y /= y.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        gy = grad * y
        return gy - y * gy.sum(ctx.dim, keepdim=True), None


def _axis(op, x, dim):
    # a 0-d tensor is one "row" of one element; reductions then take axis=None
    return normalize_dim(op, dim, x.ndim) if x.ndim else None


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """``exp(x) / exp(x).sum(dim)``, computed stably. Any shape; output has ``x``'s shape."""
    return Softmax.apply(x, _axis("softmax", x, dim))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        y = x.copy() if x.size == 0 else log_softmax_array(x, dim)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad - y.exp() * grad.sum(ctx.dim, keepdim=True), None


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """``x - logsumexp(x, dim)``, computed stably. Any shape; output has ``x``'s shape."""
    return LogSoftmax.apply(x, _axis("log_softmax", x, dim))
