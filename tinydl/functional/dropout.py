"""Dropout with an explicit training flag and generator."""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import is_device_array, uniform
from ..backend.kernels import dropout_ref, numba_loops_for
from ..grad_mode import is_grad_enabled
from ..tensor import default_generator

__all__ = ["dropout"]


class Dropout(Function):
    """``x * mask`` with the mask a keyed hash of each element's index (``dropout_ref``):
    nothing kept for the backward but the key, which applies the same mask to the gradient."""

    @staticmethod
    def forward(ctx, x, key, threshold, scale):
        ctx.args = (key, threshold, scale)
        return _apply(x, *ctx.args)

    @staticmethod
    def backward(ctx, grad):
        if is_grad_enabled():  # create_graph: the backward is the same op, so differentiable
            return Dropout.apply(grad, *ctx.args), None, None, None
        return _apply(grad.data, *ctx.args), None, None, None


def _apply(a, key, threshold, scale):
    """``a * mask`` on arrays: the Numba loop (``numba_dropout``) for C-contiguous float32 and
    float64 NumPy arrays under the Numba kernels, else the NumPy reference."""
    scale = a.dtype.type(scale)
    if numba_loops_for(a):
        from ..backend.kernels import numba_dropout

        a = np.ascontiguousarray(a)
        return numba_dropout.dropout_apply(a, key, threshold, scale, np.empty_like(a))
    return dropout_ref.dropout_apply(a, key, threshold, scale, np.empty_like(a))


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``, so the expectation is unchanged. Any shape.

    The identity (``x`` itself) when ``training`` is False or ``p == 0``. ``p == 1`` gives zeros
    (as PyTorch). The mask comes from ``generator`` (an ``np.random.Generator``), by default
    ``tinydl.tensor.default_generator()``, so ``td.manual_seed`` makes it reproducible: on the
    CPU each call draws a 64-bit key from it and the mask is a hash of the element index under
    that key (``tinydl.backend.kernels.dropout_ref``), recomputed in the backward rather than
    kept; on a GPU the mask comes from a device generator seeded from it (reproducible too, but
    other masks than the CPU's).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    if generator is None:
        generator = default_generator()
    if not is_device_array(x.data):
        key = tuple(int(k) for k in generator.integers(0, 2**32, size=2, dtype=np.uint32))
        return Dropout.apply(x, key, dropout_ref.threshold(p), 1.0 / (1.0 - p))
    keep = uniform(generator, x.shape, like=x.data) >= np.float32(p)
    # NOTE: the scale is taken in x's dtype so float16/float32 stay as they are.
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * Tensor.from_array(mask)
