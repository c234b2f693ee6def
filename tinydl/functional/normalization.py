"""Normalization: batch_norm (training and eval, running statistics) and layer_norm.

Training-mode batch_norm runs the fused ``BatchNorm`` op (kernels ``batchnorm_forward`` /
``batchnorm_backward``), batch_norm_relu the ``BatchNormRelu`` op (``batchnorm_relu_*``); layer_norm, eval-mode batch_norm and the double backward of BatchNorm
rest on ``Normalize``, ``(x - mean) / sqrt(var + eps)`` over some axes, with the affine
``* weight + bias`` composed from arithmetic ops.
"""

from __future__ import annotations

from ..autograd import Function, Tensor
from ..autograd import grad as _autograd_grad
from ..backend import get_array_module
from ..backend.kernels import get_kernel
from ..errors import ShapeError
from ..grad_mode import enable_grad, is_grad_enabled
from .activation import add_relu
from .elementwise import _const

__all__ = ["batch_norm", "batch_norm_relu", "layer_norm"]


def _mean(t: Tensor, axes: tuple) -> Tensor:
    return t.mean(axes, keepdim=True)


class Normalize(Function):
    """Outputs ``xhat`` and ``inv_std = 1 / sqrt(var + eps)`` (biased variance over ``axes``).

    ``inv_std`` is an output so that the backward, written with both outputs, is differentiable
    again without recomputing the statistics. With ``running=(mean, var, momentum)`` (arrays of
    shape (C,)) the forward also updates the running statistics in place, as PyTorch does.
    """

    @staticmethod
    def forward(ctx, x, axes, eps, running=None):
        xp = get_array_module(x)
        mean = x.mean(axis=axes, keepdims=True)
        xhat = x - mean
        var = (xhat * xhat).mean(axis=axes, keepdims=True)
        inv_std = 1 / xp.sqrt(var + eps)
        xhat *= inv_std
        if running is not None:
            _update_running(running, mean, var, x.size // mean.size)
        ctx.axes, ctx.n = axes, x.size // mean.size
        ctx.save_for_backward(xhat, inv_std)
        ctx.set_materialize_grads(False)  # inv_std rarely gets a gradient: skip its term then
        return xhat, inv_std

    @staticmethod
    def backward(ctx, grad, grad_inv_std):
        xhat, inv_std = ctx.saved_tensors
        axes = ctx.axes
        gx = None
        if grad is not None:
            gx = inv_std * (grad - _mean(grad, axes) - xhat * _mean(grad * xhat, axes))
        if grad_inv_std is not None:  # reached only by a double backward through inv_std
            term = xhat * (grad_inv_std * inv_std * inv_std / ctx.n)
            gx = -term if gx is None else gx - term
        return gx, None, None


class BatchNorm(Function):
    """Training-mode batch norm with its affine, as two fused kernels (``batchnorm_forward``
    and ``batchnorm_backward``): two passes over the batch forward and two backward, where the
    composed ops (``Normalize``, ``*``, ``+``) make about eleven.

    The kernels work on arrays, so a backward that must itself be differentiable
    (``create_graph=True``) differentiates the composed formula instead, rebuilt from the
    saved inputs; both give the same numbers (tested)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running=None):
        y, xhat, mean, var = get_kernel("batchnorm_forward", like=x)(x, weight, bias, eps)
        if running is not None:
            _update_running(running, mean, var, x.size // mean.size)
        ctx.eps, ctx.inv_std = eps, 1 / get_array_module(x).sqrt(var + eps)
        ctx.save_for_backward(x, weight, bias, xhat)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, xhat = ctx.saved_tensors
        if is_grad_enabled():  # create_graph: differentiate the composed ops
            return _graph_grads(ctx, grad, x, weight, bias, relu=False)
        w = None if weight is None else weight.data
        grads = get_kernel("batchnorm_backward", like=grad.data)(
            grad.data, xhat.data, w, ctx.inv_std.astype(grad.dtype, copy=False)
        )
        return _wrapped(ctx, grads)


class BatchNormRelu(Function):
    """Training-mode ``relu(batch_norm(x))`` in one kernel each way. The forward writes only the
    output; the backward recomputes ``xhat`` from ``x`` (kept anyway: it is the layer's input)
    and applies the ReLU mask (from the output) and the batch-norm backward in one pass. Against
    ``BatchNorm`` then ``Relu`` that saves one activation-sized array (``xhat``) per layer and
    two full passes (the ReLU's) each way."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running=None):
        return _fused_forward(ctx, "batchnorm_relu_forward", x, (), weight, bias, eps, running)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, y = ctx.saved_tensors
        if is_grad_enabled():  # create_graph: differentiate the composed ops
            return _graph_grads(ctx, grad, x, weight, bias, relu=True)
        kernel = get_kernel("batchnorm_relu_backward", like=grad.data)
        return _wrapped(ctx, kernel(*_backward_arrays(ctx, grad, x, weight, y)))


def _fused_forward(ctx, op, x, extra, weight, bias, eps, running):
    """The forward kernel ``op`` on ``(x, *extra, weight, bias, eps)``; the running statistics
    updated (``running``: see ``_update_running``), and what the fused backwards need kept."""
    y, mean, var = get_kernel(op, like=x)(x, *extra, weight, bias, eps)
    if running is not None:
        _update_running(running, mean, var, x.size // mean.size)
    ctx.eps, ctx.mean, ctx.inv_std = eps, mean, 1 / get_array_module(x).sqrt(var + eps)
    ctx.save_for_backward(x, weight, bias, y)
    return y


def _backward_arrays(ctx, grad, x, weight, y):
    """The arguments of the fused ReLU backward kernels."""
    w = None if weight is None else weight.data
    inv_std = ctx.inv_std.astype(grad.dtype, copy=False)
    return grad.data, x.data, y.data, w, ctx.mean, inv_std


class BatchNormAddRelu(Function):
    """Training-mode ``relu(batch_norm(x) + residual)`` in one kernel each way: the end of a
    residual block. As ``BatchNormRelu``, and the backward's second pass also writes the masked
    gradient, which is the residual's. Against ``BatchNorm`` then ``add_relu`` it writes, keeps
    and reads back neither the batch norm's output nor its ``xhat``."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, eps, running=None):
        op = "batchnorm_add_relu_forward"
        return _fused_forward(ctx, op, x, (residual,), weight, bias, eps, running)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, y = ctx.saved_tensors
        if is_grad_enabled():  # create_graph: the residual's gradient is the masked one
            masked = grad * _const(~(y.data <= 0), grad.dtype)
            grads = _graph_grads(ctx, masked, x, weight, bias, relu=False)
            return grads[:3] + (masked, None, None)
        kernel = get_kernel("batchnorm_add_relu_backward", like=grad.data)
        *grads, gres = kernel(*_backward_arrays(ctx, grad, x, weight, y))
        gx, gw, gb = _wrapped(ctx, grads)[:3]
        return gx, gw, gb, gres if ctx.needs_input_grad[3] else None, None, None


def _graph_grads(ctx, grad, x, weight, bias, relu: bool):
    """The backward of ``BatchNorm``/``BatchNormRelu`` with ``create_graph``: the gradients of
    the composed ops (training-mode batch norm, then ReLU when ``relu``), differentiable."""
    needs = ctx.needs_input_grad[:3]
    inputs = [t for t, n in zip((x, weight, bias), needs) if n]
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (x.shape[1],) + (1,) * (x.ndim - 2)
    with enable_grad():
        out = _affine(_normalize(x, axes, ctx.eps), weight, bias, shape)
        out = out.relu() if relu else out
    grads = iter(_autograd_grad(out, inputs, grad, create_graph=True))
    return tuple(next(grads) if n else None for n in needs) + (None, None)


def _wrapped(ctx, grads):
    """The kernels' ``(dx, dweight, dbias)`` arrays as the backward's return value."""
    return tuple(
        Tensor.from_array(g) if n else None for g, n in zip(grads, ctx.needs_input_grad[:3])
    ) + (None, None)


def _update_running(running, mean, var, n):
    """PyTorch's update: ``running = (1 - momentum) * running + momentum * batch``, the
    variance unbiased; in place on the ``(C,)`` arrays."""
    run_mean, run_var, momentum = running
    run_mean *= 1 - momentum
    run_mean += momentum * mean.reshape(run_mean.shape)
    run_var *= 1 - momentum
    run_var += (momentum * n / (n - 1)) * var.reshape(run_var.shape)


def _normalize(x: Tensor, axes: tuple, eps: float, running=None) -> Tensor:
    xhat, _ = Normalize.apply(x, axes, eps, running=running)
    return xhat


def _affine(y: Tensor, weight, bias, shape) -> Tensor:
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _per_channel(name, t, c, x_shape):
    if t is not None and tuple(t.shape) != (c,):
        raise ShapeError(
            f"batch_norm: {name} must have shape ({c},) for input {x_shape}, got {tuple(t.shape)}"
        )
    return t


def _array(t):
    return t.data if isinstance(t, Tensor) else t


def batch_norm(
    x: Tensor,
    running_mean,
    running_var,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    relu: bool = False,
    residual: Tensor | None = None,
) -> Tensor:
    """Batch normalization of ``x`` (N, C, *) per channel C.

    Training: normalizes with the batch statistics and, when ``running_mean``/``running_var``
    (Tensors or arrays of shape (C,)) are given, updates them in place:
    ``running = (1 - momentum) * running + momentum * batch`` (unbiased variance, as PyTorch).
    Eval: normalizes with the running statistics. ``weight``/``bias`` (C,) scale and shift.
    ``relu=True`` returns ``relu(batch_norm(...))``, fused in training (``batch_norm_relu``);
    with a ``residual`` as well, ``relu(batch_norm(...) + residual)`` (a residual block's end),
    fused in training when ``residual`` has ``x``'s shape, dtype and device.
    """
    if residual is not None and not relu:
        raise ValueError("batch_norm: a residual is added before the ReLU; pass relu=True too")
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected input of shape (N, C, *), got {x.shape}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        _per_channel(name, t, c, x.shape)
    _per_channel("weight", weight, c, x.shape)
    _per_channel("bias", bias, c, x.shape)
    shape = (c,) + (1,) * (x.ndim - 2)
    if training:
        if x.numel() // c <= 1:
            raise ValueError(
                "batch_norm: expected more than 1 value per channel when training, got input "
                f"of shape {x.shape}"
            )
        running = None
        if running_mean is not None and running_var is not None:
            running = (_array(running_mean), _array(running_var), momentum)
        if residual is None:
            return (BatchNormRelu if relu else BatchNorm).apply(x, weight, bias, eps, running)
        if _fits(residual, x):
            return BatchNormAddRelu.apply(x, weight, bias, residual, eps, running)
        y = BatchNorm.apply(x, weight, bias, eps, running)
        return add_relu(y, residual)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch_norm: running_mean and running_var are needed in eval mode (training=False)"
            )
        xp = get_array_module(x.data)
        mean = xp.asarray(_array(running_mean), dtype=x.dtype).reshape(shape)
        var = xp.asarray(_array(running_var), dtype=x.dtype).reshape(shape)
        y = (x - Tensor.from_array(mean)) * Tensor.from_array(1 / xp.sqrt(var + eps))
    y = _affine(y, weight, bias, shape)
    if residual is not None:
        return add_relu(y, residual)
    return y.relu() if relu else y


def _fits(residual, x) -> bool:
    return (
        isinstance(residual, Tensor)
        and residual.shape == x.shape
        and residual.dtype == x.dtype
        and residual.device == x.device
    )


def batch_norm_relu(
    x: Tensor,
    running_mean,
    running_var,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """``relu(batch_norm(x, ...))`` with the same arguments and running-statistics update; in
    training one fused kernel each way that keeps no ``xhat`` (eval: the two ops composed)."""
    return batch_norm(
        x, running_mean, running_var, weight, bias, training, momentum, eps, relu=True
    )


def layer_norm(
    x: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize ``x`` (*, *normalized_shape) over its last ``len(normalized_shape)`` dims;
    ``weight``/``bias`` have shape ``normalized_shape``."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.shape[x.ndim - k :] != shape or x.ndim < k:
        raise ShapeError(
            f"layer_norm: normalized_shape {shape} must match the last dims of input {x.shape}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ShapeError(f"layer_norm: {name} must have shape {shape}, got {tuple(t.shape)}")
    y = _normalize(x, tuple(range(x.ndim - k, x.ndim)), eps)
    return _affine(y, weight, bias, shape)
