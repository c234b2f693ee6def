"""Elementwise functions: exp, log, log1p, sqrt, abs, sin, cos, tanh, sigmoid, activations,
maximum, minimum, clamp, where."""

from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module

__all__ = ["exp", "log"]


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


def exp(x: Tensor) -> Tensor:
    """e ** x."""
    return Exp.apply(x)


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x


def log(x: Tensor) -> Tensor:
    """Natural logarithm."""
    return Log.apply(x)
