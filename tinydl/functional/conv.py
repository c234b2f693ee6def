"""Convolution: conv2d through Im2col/Col2im Functions whose backwards are each other.

``conv2d`` is composed, DeZero-style: ``im2col`` copies every receptive field into a column
(layout ``(C*KH*KW, N*OH*OW)``, see ``tinydl.backend.kernels.numpy_ref``), one GEMM with the
weight covers the whole batch, and reshape/permute bring the result back to NCHW. Its gradients
come from those ops; because ``Im2col.backward`` is ``col2im`` and ``Col2im.backward`` is
``im2col``, so do its second derivatives.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend.kernels import conv_output_size, get_kernel
from ..errors import DTypeError, ShapeError
from ._util import lift
from .arithmetic import matmul

__all__ = ["conv2d", "im2col", "col2im"]


def _pair(op: str, name: str, value) -> tuple[int, int]:
    """An int or a pair of ints, as a pair."""
    is_int = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_int, value)):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _window_args(op, kernel_size, stride, padding, dilation=1):
    """Normalize the window arguments to pairs and check their ranges."""
    args = {
        "kernel_size": _pair(op, "kernel_size", kernel_size),
        "stride": _pair(op, "stride", stride),
        "padding": _pair(op, "padding", padding),
        "dilation": _pair(op, "dilation", dilation),
    }
    for name, low in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
        if min(args[name]) < low:
            raise ValueError(f"{op}: {name} must be >= {low}, got {args[name]}")
    return tuple(args.values())


def _output_hw(op, x_shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    """``(OH, OW)``, or a ValueError when the (dilated) kernel is larger than the padded input."""
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    padded = tuple(n + 2 * p for n, p in zip(x_shape[-2:], padding))
    if span[0] > padded[0] or span[1] > padded[1]:
        dilated = f" (dilated to {span})" if span != tuple(kernel) else ""
        raise ValueError(
            f"{op}: kernel {tuple(kernel)}{dilated} is larger than the padded input {padded} "
            f"(input {tuple(x_shape)}, padding {padding})"
        )
    return tuple(
        conv_output_size(n, k, s, p, d)
        for n, k, s, p, d in zip(x_shape[-2:], kernel, stride, padding, dilation)
    )


class Im2col(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation):
        ctx.x_shape, ctx.args = x.shape, (kernel, stride, padding, dilation)
        return get_kernel("im2col")(x, *kernel, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        return Col2im.apply(grad, ctx.x_shape, *ctx.args), None, None, None, None


def im2col(x: Tensor, kernel_size, stride=1, padding=0, dilation=1) -> Tensor:
    """Receptive fields of ``x`` ``(N, C, H, W)`` as columns: ``(C*KH*KW, N*OH*OW)``.

    Row ``(c*KH + i)*KW + j`` is channel ``c`` at kernel offset ``(i, j)``; column
    ``(n*OH + oh)*OW + ow`` is output position ``(oh, ow)`` of image ``n``. Zero padding.
    """
    x = lift(x)
    if x.ndim != 4:
        raise ShapeError(f"im2col: expected input (N, C, H, W), got shape {x.shape}")
    kernel, stride, padding, dilation = _window_args(
        "im2col", kernel_size, stride, padding, dilation
    )
    _output_hw("im2col", x.shape, kernel, stride, padding, dilation)
    return Im2col.apply(x, kernel, stride, padding, dilation)


class Col2im(Function):
    @staticmethod
    def forward(ctx, cols, x_shape, kernel, stride, padding, dilation):
        ctx.args = (kernel, stride, padding, dilation)
        return get_kernel("col2im")(cols, x_shape, *kernel, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        return Im2col.apply(grad, *ctx.args), None, None, None, None, None


def col2im(cols: Tensor, x_shape, kernel_size, stride=1, padding=0, dilation=1) -> Tensor:
    """The adjoint of ``im2col``: columns ``(C*KH*KW, N*OH*OW)`` summed back into an image of
    ``x_shape`` ``(N, C, H, W)`` (overlapping windows add up)."""
    cols, x_shape = lift(cols), tuple(int(n) for n in x_shape)
    if len(x_shape) != 4:
        raise ShapeError(f"col2im: x_shape must be (N, C, H, W), got {x_shape}")
    kernel, stride, padding, dilation = _window_args(
        "col2im", kernel_size, stride, padding, dilation
    )
    oh, ow = _output_hw("col2im", x_shape, kernel, stride, padding, dilation)
    n, c = x_shape[:2]
    expected = (c * kernel[0] * kernel[1], n * oh * ow)
    if cols.shape != expected:
        raise ShapeError(
            f"col2im: columns of shape {cols.shape} do not fit x_shape {x_shape} with kernel "
            f"{kernel}; expected {expected}"
        )
    return Col2im.apply(cols, x_shape, kernel, stride, padding, dilation)


def _check_conv_shapes(x, weight, bias, groups):
    if x.ndim != 4:
        raise ShapeError(f"conv2d: expected input (N, C, H, W) or (C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ShapeError(
            f"conv2d: expected weight (C_out, C_in/groups, KH, KW), got {weight.shape}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    shapes = f"(input {x.shape}, weight {weight.shape})"
    cout, cin_g = weight.shape[:2]
    if x.shape[1] % groups or cout % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide both the input channels ({x.shape[1]}) and the "
            f"output channels ({cout}) {shapes}"
        )
    if x.shape[1] != cin_g * groups:
        per = f" ({groups} groups x {cin_g})" if groups > 1 else ""
        raise ShapeError(
            f"conv2d: input has {x.shape[1]} channels but weight expects {cin_g * groups}{per} "
            f"{shapes}"
        )
    if bias is not None and bias.shape != (cout,):
        raise ShapeError(f"conv2d: bias must have shape ({cout},), got {bias.shape} {shapes}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise DTypeError(
                f"conv2d: input is {x.dtype} but {name} is {t.dtype}; convert one with .to(dtype)"
            )


def conv2d(x: Tensor, weight: Tensor, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    ``x`` ``(N, C_in, H, W)`` (or unbatched ``(C_in, H, W)``), ``weight``
    ``(C_out, C_in/groups, KH, KW)``, ``bias`` ``(C_out,)`` -> ``(N, C_out, OH, OW)`` with
    ``OH = (H + 2*padding - dilation*(KH - 1) - 1) // stride + 1``. ``stride``, ``padding`` and
    ``dilation`` are ints or ``(h, w)`` pairs; padding is zeros.
    """
    x, weight = lift(x), lift(weight)
    bias = None if bias is None else lift(bias)
    if x.ndim == 3:
        return conv2d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    _check_conv_shapes(x, weight, bias, groups)
    cout, _, kh, kw = weight.shape
    _, stride, padding, dilation = _window_args("conv2d", 1, stride, padding, dilation)
    oh, ow = _output_hw("conv2d", x.shape, (kh, kw), stride, padding, dilation)

    cols = Im2col.apply(x, (kh, kw), stride, padding, dilation)  # (C_in*KH*KW, N*OH*OW)
    if groups == 1:
        out = matmul(weight.reshape(cout, -1), cols)  # one GEMM for the whole batch
    else:
        # the rows of group g are one contiguous block of cols: a batched GEMM over groups
        w = weight.reshape(groups, cout // groups, -1)
        out = matmul(w, cols.reshape(groups, -1, cols.shape[1]))
    out = out.reshape(cout, -1)
    if bias is not None:
        out = out + bias.reshape(cout, 1)
    return out.reshape(cout, x.shape[0], oh, ow).permute(1, 0, 2, 3)
