"""Linear algebra for layers: linear (x @ W.T + b)."""

from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import threads
from ..errors import ShapeError
from ..grad_mode import is_grad_enabled
from .arithmetic import matmul

__all__ = ["linear"]


class Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        # NOTE: one 2-D matmul over the flattened leading dims is faster than a batched one.
        y = threads.matmul(x.reshape(-1, x.shape[-1]), weight.T)
        y = y.reshape(x.shape[:-1] + (weight.shape[0],))
        return y if bias is None else y + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        if is_grad_enabled():  # create_graph: Tensor ops, differentiable again
            mm, swap = matmul, lambda t: t.mT
        else:  # NOTE: plain arrays: two products, not six recorded ops (the MLP step's cost)
            grad, x, weight = grad.data, x.data, weight.data
            mm, swap = threads.matmul, lambda a: a.T
        flat = grad.reshape(-1, weight.shape[0])
        gx = mm(flat, weight).reshape(x.shape) if need_x else None
        gw = mm(swap(flat), x.reshape(-1, weight.shape[1])) if need_w else None
        gb = grad if need_b else None  # the engine sums the leading dims
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``: x (*, in), weight (out, in), bias (out,) -> (*, out)."""
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out, in), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features but weight expects "
            f"{weight.shape[1]} (input {x.shape}, weight {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(
            f"linear: bias must have shape ({weight.shape[0]},) for weight {weight.shape}, "
            f"got {bias.shape}"
        )
    return Linear.apply(x, weight, bias)
