"""Reference kernels in plain NumPy: im2col, col2im and max pooling, NCHW, array in / array out.

They are the test oracle for the Numba and CUDA kernels, which keep the same signatures.
``stride``, ``padding`` and ``dilation`` are ``(height, width)`` pairs (an int means both).
The code calls only the array module of its input (``xp``), so CuPy arrays should work too
(not yet tested on a GPU).

Column layout ("Caffe", K x M)
------------------------------
``im2col`` returns ``cols`` of shape ``(C*KH*KW, N*OH*OW)``:

- row ``(c*KH + i)*KW + j`` holds input channel ``c`` at kernel offset ``(i, j)``; this is the
  order of ``weight.reshape(C_out, C*KH*KW)``, so a convolution is the single GEMM
  ``weight.reshape(C_out, -1) @ cols`` -> ``(C_out, N*OH*OW)`` over the whole batch;
- column ``(n*OH + oh)*OW + ow`` is output position ``(oh, ow)`` of image ``n``.

With groups, the rows of group ``g`` are the contiguous block of its channels, so
``cols.reshape(G, C//G*KH*KW, N*OH*OW)`` feeds one batched GEMM.

K x M rather than M x K ("one row per output pixel") because it measured faster on a 2-core
CPU with OpenBLAS (N=64, C=32->64, 28x28, 3x3, float32): the im2col copy is 2-4x faster (the
transpose keeps the output position innermost, as in the input), and the forward,
weight-gradient and input-gradient GEMMs are as fast or up to 1.8x faster.
"""

from __future__ import annotations

import numpy as np

from ..device import get_array_module
from .geometry import pair

# The kernel ops: every variant (Numba, CUDA) provides these, with the signatures below.
OPS = (
    "im2col",
    "col2im",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_relu_forward",
    "batchnorm_relu_backward",
    "batchnorm_add_relu_forward",
    "batchnorm_add_relu_backward",
)
__all__ = ["OPS", *OPS, "conv_output_size", "batchnorm_statistics"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's formula, floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(x_shape, kh, kw, stride, padding, dilation):
    """``(OH, OW)`` and the pairs, after checking that the windows fit the padded input."""
    stride, padding = pair(stride, "kernel", "stride"), pair(padding, "kernel", "padding")
    dilation = pair(dilation, "kernel", "dilation")
    h, w = x_shape[-2:]
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    # NOTE: checked here too because as_strided below would read outside the buffer otherwise.
    if oh < 1 or ow < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"kernel ({kh}, {kw}) with stride {stride}, padding {padding}, dilation {dilation} "
            f"does not fit an input of shape {tuple(x_shape)}"
        )
    return oh, ow, stride, padding, dilation


def _pad(x, padding, value=0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xpad, kh, kw, oh, ow, stride, dilation):
    """A read-only view of shape ``(N, C, OH, OW, KH, KW)``: ``[n, c, oh, ow, i, j]`` is
    ``xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]``. No copy."""
    xp = get_array_module(xpad)
    sn, sc, sh, sw = xpad.strides
    shape = xpad.shape[:2] + (oh, ow, kh, kw)
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return xp.lib.stride_tricks.as_strided(xpad, shape, strides)


def _offset_slices(i, j, oh, ow, stride, dilation):
    """The ``(OH, OW)`` strided slice of the padded input that kernel offset ``(i, j)`` touches."""
    h0, w0 = i * dilation[0], j * dilation[1]
    return (
        slice(h0, h0 + stride[0] * (oh - 1) + 1, stride[0]),
        slice(w0, w0 + stride[1] * (ow - 1) + 1, stride[1]),
    )


def im2col(x, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """``x`` ``(N, C, H, W)`` -> ``cols`` ``(C*KH*KW, N*OH*OW)`` (see the module docstring).

    Padding is zeros. Any strides of ``x`` are accepted; the result is a new C-contiguous array.
    """
    n, c = x.shape[:2]
    oh, ow, stride, padding, dilation = _geometry(x.shape, kh, kw, stride, padding, dilation)
    win = _windows(_pad(x, padding), kh, kw, oh, ow, stride, dilation)
    # (N, C, OH, OW, KH, KW) -> (C, KH, KW, N, OH, OW), copied: never a view of x
    cols = get_array_module(x).array(win.transpose(1, 4, 5, 0, 2, 3), order="C")
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, x_shape, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col``: ``cols`` ``(C*KH*KW, N*OH*OW)`` -> ``x`` of ``x_shape``.

    Every column entry is added back to the input pixel it was copied from (overlapping
    windows add up); entries that came from the padding are dropped.
    """
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    oh, ow, stride, padding, dilation = _geometry(x_shape, kh, kw, stride, padding, dilation)
    ph, pw = padding
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    # accumulate as (C, N, Hp, Wp) so each cols[:, i, j] block adds without a transpose
    acc = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # within one offset the slice hits distinct pixels, so += is exact (no np.add.at)
            acc[(..., *_offset_slices(i, j, oh, ow, stride, dilation))] += cols[:, i, j]
    return xp.ascontiguousarray(acc[:, :, ph : ph + h, pw : pw + w].transpose(1, 0, 2, 3))


def _lowest(dtype):
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


def maxpool2d_forward(x, kernel, stride, padding=0):
    """Max pooling of ``x`` ``(N, C, H, W)``, padded with -inf.

    Returns ``(out, argmax)``, both ``(N, C, OH, OW)``. ``argmax[n, c, oh, ow]`` is the position
    of the maximum inside its window, ``i*KW + j`` for kernel offset ``(i, j)`` (int64). On ties
    the first position wins; a NaN in a window wins and propagates, as in PyTorch.
    """
    xp = get_array_module(x)
    kh, kw = pair(kernel, "maxpool2d", "kernel")
    oh, ow, stride, padding, _ = _geometry(x.shape, kh, kw, stride, padding, 1)
    win = _windows(_pad(x, padding, _lowest(x.dtype)), kh, kw, oh, ow, stride, (1, 1))
    flat = win.reshape(win.shape[:4] + (kh * kw,))  # copies: the windows overlap
    argmax = xp.argmax(flat, axis=-1)
    out = xp.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out, argmax.astype(np.int64, copy=False)


def maxpool2d_backward(grad, argmax, x_shape, kernel, stride, padding=0):
    """Gradient of ``maxpool2d_forward``: each ``grad[n, c, oh, ow]`` goes to the input pixel that
    held the window's maximum (``argmax``); pixels that were the maximum of several windows
    collect the sum. Returns ``dx`` of ``x_shape`` and ``grad``'s dtype."""
    xp = get_array_module(grad)
    n, c, h, w = x_shape
    kh, kw = pair(kernel, "maxpool2d", "kernel")
    oh, ow, stride, padding, _ = _geometry(x_shape, kh, kw, stride, padding, 1)
    ph, pw = padding
    dx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad.dtype)
    for i in range(kh):
        for j in range(kw):
            hit = xp.where(argmax == i * kw + j, grad, 0)
            dx[(..., *_offset_slices(i, j, oh, ow, stride, (1, 1)))] += hit
    return xp.ascontiguousarray(dx[:, :, ph : ph + h, pw : pw + w])


def _channel_view(x):
    """``(N, C, *)`` as ``(N, C, S)`` and the axes (0, 2) that a per-channel statistic reduces."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def batchnorm_statistics(x3):
    """Per-channel ``(mean, var, x3 - mean)`` of ``x3`` ``(N, C, S)``, kept ``(1, C, 1)``:
    two passes, so a large mean does not swamp the variance. Every backend's forward uses it."""
    mean = x3.mean(axis=(0, 2), keepdims=True)
    centered = x3 - mean
    return mean, (centered * centered).mean(axis=(0, 2), keepdims=True), centered


def batchnorm_forward(x, weight, bias, eps):
    """Training-mode batch normalization of ``x`` ``(N, C, *)`` per channel ``C``.

    Returns ``(y, xhat, mean, var)``: ``xhat = (x - mean) / sqrt(var + eps)`` with the batch
    statistics (biased variance, two passes), ``y = xhat * weight + bias`` (``weight``/``bias``
    ``(C,)`` or ``None``); ``mean`` and ``var`` have shape ``(C,)``."""
    mean, var, xhat = batchnorm_statistics(_channel_view(x))
    xhat *= 1 / get_array_module(x).sqrt(var + eps)
    y = xhat if weight is None else xhat * weight.reshape(1, -1, 1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1)
    if y is xhat:
        y = xhat.copy()
    return y.reshape(x.shape), xhat.reshape(x.shape), mean.reshape(-1), var.reshape(-1)


def batchnorm_backward(grad, xhat, weight, inv_std):
    """Gradients of ``batchnorm_forward`` from the upstream ``grad`` and the saved ``xhat``:
    ``(dx, dweight, dbias)``, the last two ``(C,)``; ``inv_std = 1 / sqrt(var + eps)`` ``(C,)``.

    ``dx = weight * inv_std * (grad - mean(grad) - xhat * mean(grad * xhat))`` per channel."""
    g3, h3 = _channel_view(grad), _channel_view(xhat)
    m = g3.shape[0] * g3.shape[2]
    dbias = g3.sum(axis=(0, 2))
    dweight = (g3 * h3).sum(axis=(0, 2))
    scale = inv_std if weight is None else weight * inv_std
    dx = g3 - (dbias / m).reshape(1, -1, 1)
    dx -= h3 * (dweight / m).reshape(1, -1, 1)
    dx *= scale.reshape(1, -1, 1)
    return dx.reshape(grad.shape), dweight.astype(grad.dtype), dbias.astype(grad.dtype)


def batchnorm_relu_forward(x, weight, bias, eps):
    """``relu(batchnorm_forward(x, weight, bias, eps).y)`` without keeping ``xhat``: returns
    ``(y, mean, var)``. The backward recomputes ``xhat`` from ``x``, which the caller keeps."""
    y, _, mean, var = batchnorm_forward(x, weight, bias, eps)
    return get_array_module(y).maximum(y, 0, out=y), mean, var


def batchnorm_relu_backward(grad, x, y, weight, mean, inv_std):
    """Gradients of ``batchnorm_relu_forward`` from the upstream ``grad``, its input ``x`` and
    output ``y``: ``batchnorm_backward`` of ``grad * (y > 0)`` (a NaN ``y`` passes, and a NaN
    ``grad`` under a 0 stays NaN, as ReLU's backward) with ``xhat = (x - mean) * inv_std``."""
    g3, x3 = _channel_view(grad), _channel_view(x)
    g = g3 * ~(_channel_view(y) <= 0)
    xhat = (x3 - mean.reshape(1, -1, 1)) * inv_std.reshape(1, -1, 1)
    dx, dweight, dbias = batchnorm_backward(g, xhat.astype(grad.dtype, copy=False), weight, inv_std)
    return dx.reshape(grad.shape), dweight, dbias


def batchnorm_add_relu_forward(x, residual, weight, bias, eps):
    """``relu(batchnorm_forward(x, weight, bias, eps).y + residual)`` (``residual`` of ``x``'s
    shape: a residual block's shortcut) without keeping ``xhat``: returns ``(y, mean, var)``."""
    y, _, mean, var = batchnorm_forward(x, weight, bias, eps)
    y += residual
    return get_array_module(y).maximum(y, 0, out=y), mean, var


def batchnorm_add_relu_backward(grad, x, y, weight, mean, inv_std):
    """Gradients of ``batchnorm_add_relu_forward``: ``(dx, dweight, dbias, dresidual)``, where
    ``dresidual = grad * (y > 0)`` (NaN ``y`` passing, as ReLU's) and the rest are
    ``batchnorm_relu_backward``'s."""
    dx, dweight, dbias = batchnorm_relu_backward(grad, x, y, weight, mean, inv_std)
    return dx, dweight, dbias, grad * ~(y <= 0)
