"""References for ``numba_relu``: ReLU's forward and backward on arrays, in NumPy.

Array-module generic (NumPy or CuPy); the oracle the tests compare the Numba loops with, and
the path every array the loops do not take (GPU arrays, integer or strided arrays) runs on.
"""

from __future__ import annotations

from ..device import get_array_module

__all__ = ["relu_forward", "relu_backward", "add_relu_forward"]


def relu_forward(x, out):
    """``max(x, 0)`` into ``out``: NaN passes, ``-0.0`` gives ``+0.0``. Returns ``out``."""
    return get_array_module(x).maximum(x, 0, out=out)


def relu_backward(grad, y, out):
    """``grad * (y > 0 or y is NaN)`` into ``out``: a multiply by the mask, so an infinite or
    NaN ``grad`` where ``y <= 0`` gives NaN, as PyTorch's. Returns ``out``."""
    return get_array_module(grad).multiply(grad, ~(y <= 0), out=out)


def add_relu_forward(a, b, out):
    """``relu_forward`` of ``a + b`` (one shape) into ``out``. Returns ``out``."""
    xp = get_array_module(a)
    return xp.maximum(xp.add(a, b, out=out), 0, out=out)
