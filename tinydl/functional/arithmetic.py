"""Arithmetic: add, sub, mul, div, neg, pow, matmul, and dtype/device casts.

Broadcasting needs no code here: a backward may return the broadcast-shaped gradient and the
engine sums it down to each input's shape.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_device, threads, transfer
from ..errors import ShapeError
from ._util import binary, lift_pair

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "matmul", "cast", "to_device"]


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return binary("add", np.add, a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def add(a, b) -> Tensor:
    """``a + b`` with broadcasting."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):  # NOTE: the common case, no call
        return Add.apply(a, b)
    return Add.apply(*lift_pair(a, b))


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return binary("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad


def sub(a, b) -> Tensor:
    """``a - b`` with broadcasting."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):  # NOTE: the common case, no call
        return Sub.apply(a, b)
    return Sub.apply(*lift_pair(a, b))


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return binary("mul", np.multiply, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga = grad * b if ctx.needs_input_grad[0] else None
        gb = grad * a if ctx.needs_input_grad[1] else None
        return ga, gb


def mul(a, b) -> Tensor:
    """``a * b`` with broadcasting."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):  # NOTE: the common case, no call
        return Mul.apply(a, b)
    return Mul.apply(*lift_pair(a, b))


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return binary("div", np.true_divide, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga = grad / b if ctx.needs_input_grad[0] else None
        gb = -grad * a / (b * b) if ctx.needs_input_grad[1] else None
        return ga, gb


def div(a, b) -> Tensor:
    """``a / b`` with broadcasting (true division; integers give float32)."""
    a, b = lift_pair(a, b)
    if a.dtype.kind in "iub" and b.dtype.kind in "iub":
        a, b = a.float(), b.float()
    return Div.apply(a, b)


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


def neg(x: Tensor) -> Tensor:
    """``-x``."""
    return Neg.apply(x)


class PowScalar(Function):
    """``x ** c`` for a Python number ``c``."""

    @staticmethod
    def forward(ctx, x, c):
        ctx.save_for_backward(x)
        ctx.c = c
        return x ** x.dtype.type(c) if x.dtype.kind == "f" else x**c

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.c == 0:
            return grad * 0, None
        return grad * ctx.c * x ** (ctx.c - 1), None


class Pow(Function):
    """``a ** b`` for two tensors."""

    @staticmethod
    def forward(ctx, a, b):
        out = binary("pow", np.power, a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = grad * b * a ** (b - 1)
        if ctx.needs_input_grad[1]:
            # d/db a**b = a**b log a; where a == 0 the product is taken as 0, as PyTorch does
            # NOTE: adding 1 where a == 0 keeps log finite there (out is 0 at those places).
            safe_a = a + Tensor.from_array((a.data == 0).astype(a.dtype))
            gb = grad * out * safe_a.log()
        return ga, gb


def pow(a, b) -> Tensor:
    """``a ** b``: tensor ** number, number ** tensor or tensor ** tensor."""
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return PowScalar.apply(a, b)
    return Pow.apply(*lift_pair(a, b))


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError(
                f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}"
            )
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not align: {k_a} != {k_b}")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(
                f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast together"
            ) from None
        ctx.save_for_backward(a, b)
        return threads.matmul(a, b)  # large 2-D NumPy products split across the worker threads

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        a_vec, b_vec = a.ndim == 1, b.ndim == 1
        if a_vec and b_vec:  # dot product
            return grad * b, grad * a
        a2 = a.reshape(1, -1) if a_vec else a
        b2 = b.reshape(-1, 1) if b_vec else b
        g = grad
        if a_vec:
            g = g.unsqueeze(-2)
        if b_vec:
            g = g.unsqueeze(-1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = matmul(g, b2.mT)
            ga = ga.squeeze(-2) if a_vec else ga
        if ctx.needs_input_grad[1]:
            gb = matmul(a2.mT, g)
            gb = gb.squeeze(-1) if b_vec else gb
        return ga, gb


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's rules: 1-D, 2-D, batched, batch dimensions broadcast."""
    return MatMul.apply(*lift_pair(a, b))


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # the engine casts the gradient back to the input's dtype


def cast(x: Tensor, dtype) -> Tensor:
    """``x`` converted to ``dtype`` (differentiable between floating dtypes)."""
    return Cast.apply(x, np.dtype(dtype))


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, device):
        ctx.source = get_device(x)
        return transfer(x, device)

    @staticmethod
    def backward(ctx, grad):
        return grad.to(ctx.source), None


def to_device(x: Tensor, device) -> Tensor:
    """``x`` copied to ``device`` (differentiable: the gradient travels back)."""
    return ToDevice.apply(x, device)
