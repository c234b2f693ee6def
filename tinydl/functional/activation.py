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


def _shifted(x, axis):
    """``x - max(x)`` along ``axis`` (a fresh array): every entry <= 0, the largest exactly 0."""
    # NOTE: with logits like +-1e308 the difference overflows to -inf, whose exp is the exact 0.
    with np.errstate(over="ignore", invalid="ignore"):
        return x - x.max(axis=axis, keepdims=True)


def log_softmax_array(x, axis):
    """Stable log-softmax of a raw array (shared with the fused cross-entropy)."""
    xp = get_array_module(x)
    z = _shifted(x, axis)
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
