"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d (NCHW, as torch.nn.functional).

Max pooling runs the pooling kernels; its backward is itself a Function whose backward picks
gradients at the saved argmax, so second derivatives work. Average pooling is composed from
``Im2col`` and a sum, adaptive average pooling from a reshape-mean or two matmuls with
averaging matrices; their higher derivatives come from those ops.
"""

from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..backend.kernels import get_kernel
from ..backend.kernels.geometry import pair
from ..errors import DTypeError, ShapeError
from ._util import lift
from .arithmetic import matmul
from .conv import Im2col, _output_hw, _window_args

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]


def _pool_args(op, x, kernel_size, stride, padding):
    """Check the input and window arguments; returns ``(kernel, stride, padding, (OH, OW))``."""
    if x.ndim != 4:
        raise ShapeError(f"{op}: expected input (N, C, H, W) or (C, H, W), got shape {x.shape}")
    stride = kernel_size if stride is None else stride
    kernel, stride, padding, _ = _window_args(op, kernel_size, stride, padding)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding {padding} must be at most half of kernel_size {kernel} "
            "(otherwise a window could hold only padding)"
        )
    return kernel, stride, padding, _output_hw(op, x.shape, kernel, stride, padding, (1, 1))


def _check_float(op, x):
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: needs a floating-point input, got {x.dtype}")


def _unbatched(fn, x, *args):
    """Run a 4-D pooling function on an unbatched ``(C, H, W)`` input."""
    return fn(x.unsqueeze(0), *args).squeeze(0)


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        out, argmax = get_kernel("maxpool2d_forward", like=x)(x, kernel, stride, padding)
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.args = x.shape, (kernel, stride, padding)
        return out

    @staticmethod
    def backward(ctx, grad):
        (argmax,) = ctx.saved_tensors
        dx = MaxPool2dBackward.apply(grad, argmax.data, ctx.x_shape, *ctx.args)
        return dx, None, None, None


class MaxPool2dBackward(Function):
    """Sends each output gradient to the input pixel that held its window's maximum."""

    @staticmethod
    def forward(ctx, grad, argmax, x_shape, kernel, stride, padding):
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.args = x_shape, (kernel, stride, padding)
        return get_kernel("maxpool2d_backward", like=grad)(
            grad, argmax, x_shape, kernel, stride, padding
        )

    @staticmethod
    def backward(ctx, gg):
        # The forward is linear in grad; its adjoint reads gg at each window's argmax: take
        # all windows as columns (im2col) and keep the argmax row of each with a one-hot mask.
        (argmax,) = ctx.saved_tensors
        n, c, h, w = ctx.x_shape
        kernel, stride, padding = ctx.args
        cols = Im2col.apply(gg.reshape(n * c, 1, h, w), kernel, stride, padding, (1, 1))
        xp = get_array_module(argmax.data)
        rows = xp.arange(kernel[0] * kernel[1]).reshape(-1, 1)
        onehot = (rows == argmax.data.reshape(1, -1)).astype(gg.dtype)
        picked = (cols * Tensor.from_array(onehot)).sum(0).reshape(argmax.shape)
        return picked, None, None, None, None, None


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over ``kernel_size`` windows: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``, with
    ``OH = (H + 2*padding - KH) // stride + 1``. ``stride`` defaults to ``kernel_size``; the
    padding is -inf and at most half the kernel. A NaN in a window propagates."""
    x = lift(x)
    if x.ndim == 3:
        return _unbatched(max_pool2d, x, kernel_size, stride, padding)
    kernel, stride, padding, _ = _pool_args("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d.apply(x, kernel, stride, padding)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean over ``kernel_size`` windows: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``. Zero padding
    counts in the mean (PyTorch's default ``count_include_pad=True``)."""
    x = lift(x)
    if x.ndim == 3:
        return _unbatched(avg_pool2d, x, kernel_size, stride, padding)
    kernel, stride, padding, (oh, ow) = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    _check_float("avg_pool2d", x)
    n, c, h, w = x.shape
    # one channel per "image", so the im2col rows are exactly the kernel offsets
    cols = Im2col.apply(x.reshape(n * c, 1, h, w), kernel, stride, padding, (1, 1))
    return (cols.sum(0) / (kernel[0] * kernel[1])).reshape(n, c, oh, ow)


def _averaging_matrix(size: int, out: int, like: Tensor) -> Tensor:
    """``(out, size)`` matrix whose row ``i`` averages PyTorch's adaptive window
    ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    xp = get_array_module(like.data)
    m = xp.zeros((out, size), dtype=like.dtype)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1 / (end - start)
    return Tensor.from_array(m)


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average pooling to a fixed ``output_size`` (an int or a pair; ``None`` in the pair keeps
    that side): ``(N, C, H, W)`` -> ``(N, C, OH, OW)``; windows as in PyTorch (they may overlap
    and differ in size when the sizes do not divide)."""
    x = lift(x)
    if x.ndim == 3:
        return _unbatched(adaptive_avg_pool2d, x, output_size)
    if x.ndim != 4:
        raise ShapeError(
            f"adaptive_avg_pool2d: expected input (N, C, H, W) or (C, H, W), got shape {x.shape}"
        )
    _check_float("adaptive_avg_pool2d", x)
    n, c, h, w = x.shape
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(s if s is not None else d for s, d in zip(output_size, (h, w)))
    oh, ow = pair(output_size, "adaptive_avg_pool2d", "output_size", minimum=1)
    if h % oh == 0 and w % ow == 0:  # fast path: equal, non-overlapping windows
        return x.reshape(n, c, oh, h // oh, ow, w // ow).mean((3, 5))
    rows, cols = _averaging_matrix(h, oh, x), _averaging_matrix(w, ow, x)
    return matmul(matmul(rows, x), cols.mT)
