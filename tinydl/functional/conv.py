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
from ..backend import get_array_module, is_device_array
from ..backend.kernels import conv_output_size, get_kernel, im2col_chunk
from ..backend.kernels.geometry import pair
from ..backend.threads import get_num_threads, parallel, split
from ..errors import DTypeError, ShapeError
from ..grad_mode import is_grad_enabled
from ._conv_images import forward_images, grads_images, image_kernels
from ._util import lift
from .arithmetic import matmul
from .conv_winograd import use_winograd, winograd_forward, winograd_grads

__all__ = ["conv2d", "im2col", "col2im"]


def _window_args(op, kernel_size, stride, padding, dilation=1):
    """Normalize the window arguments to pairs and check their ranges."""
    return (
        pair(kernel_size, op, "kernel_size", minimum=1),
        pair(stride, op, "stride", minimum=1),
        pair(padding, op, "padding", minimum=0),
        pair(dilation, op, "dilation", minimum=1),
    )


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
        return get_kernel("im2col", like=x)(x, *kernel, stride, padding, dilation)

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
        return get_kernel("col2im", like=cols)(cols, x_shape, *kernel, stride, padding, dilation)

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

    Memory: the im2col columns (``C_in*KH*KW x N*OH*OW`` elements) are kept for the weight
    gradient when the whole batch's fit the im2col budget (256 MiB unless changed with
    ``td.backend.set_im2col_budget`` or ``with td.backend.im2col_budget(nbytes):``); above it
    the batch runs in chunks of images that fit and backward recomputes each chunk's columns,
    trading time for memory. Wide enough 3x3 stride-1 layers on the CPU (Numba kernels; the
    rule is ``conv_winograd.use_winograd``) run Winograd F(2x2, 3x3) or F(4x4, 3x3) instead and
    keep its transformed input (about 4x or 2.5x ``x``, against im2col's 9x).
    """
    x, weight = lift(x), lift(weight)
    bias = None if bias is None else lift(bias)
    if x.ndim == 3:
        return conv2d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    _check_conv_shapes(x, weight, bias, groups)
    cout, _, kh, kw = weight.shape
    _, stride, padding, dilation = _window_args("conv2d", 1, stride, padding, dilation)
    _output_hw("conv2d", x.shape, (kh, kw), stride, padding, dilation)  # a clear error first
    return Conv2d.apply(x, weight, bias, stride, padding, dilation, groups)


def _gemm(w2, cols, groups):
    """``(C_out, K) @ (K, M)``; with groups, one batched GEMM over the groups' row blocks."""
    if groups == 1:
        return w2 @ cols
    xp = get_array_module(cols)
    out = xp.matmul(w2.reshape(groups, -1, w2.shape[1]), cols.reshape(groups, -1, cols.shape[1]))
    return out.reshape(-1, cols.shape[1])


def _shares(x, n: int) -> list[tuple[int, int]]:
    """Image ranges, one per worker thread on the CPU (see ``tinydl.backend.threads``), or the
    whole batch on a GPU (CuPy runs asynchronously: one stream of launches)."""
    return [(0, n)] if is_device_array(x) else split(n, get_num_threads())


def _chunks(share, chunk):
    start, stop = share
    return [(s, min(s + chunk, stop)) for s in range(start, stop, chunk)]


class Conv2d(Function):
    """im2col, one GEMM per share of the batch, and the result laid out as NCHW with the bias
    added in the same pass. On the CPU the batch is split across the worker threads, each
    running single-threaded BLAS on its share. The columns are kept for the weight gradient
    when each share's fit the im2col budget (``tinydl.backend.set_im2col_budget``); otherwise a
    share runs in chunks that do, and backward recomputes them chunk by chunk.

    Wide enough 3x3 stride-1 layers on the CPU with the Numba kernels take the Winograd
    F(2x2, 3x3) or F(4x4, 3x3) path instead (``conv_winograd.use_winograd``: no columns, 2.25x
    or 4x fewer multiplies); double backward rebuilds im2col columns either way."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        xp = get_array_module(x)
        n = x.shape[0]
        cout, _, kh, kw = weight.shape
        args = ((kh, kw), stride, padding, dilation)
        ctx.args, ctx.groups = args, groups
        ctx.winograd = use_winograd(x, weight, stride, padding, dilation, groups)
        if ctx.winograd:
            out, vs = winograd_forward(ctx, x, weight, bias, padding, ctx.winograd)
            ctx.save_for_backward(x, weight, *vs)
            return out
        w2 = weight.reshape(cout, -1)
        oh, ow = _output_hw("conv2d", x.shape, (kh, kw), stride, padding, dilation)
        shares = _shares(x, n)
        chunk = im2col_chunk(x.shape, kh, kw, x.dtype.itemsize, *args[1:])
        if chunk < n:  # the shares' chunks are in flight together: they share the budget
            chunk = max(1, chunk // len(shares))
        ctx.shares, ctx.chunk = shares, chunk
        ctx.image_kernels, ctx.ones = image_kernels(x, groups, oh * ow), bias is not None
        if ctx.image_kernels:  # CPU, Numba: the per-image layout (see _conv_images)
            y, cols = forward_images(ctx, x, weight, bias, oh, ow)
            ctx.save_for_backward(x, weight, *cols)
            return y
        out = xp.empty((n, cout, oh * ow), dtype=x.dtype)
        im2col_ = get_kernel("im2col", like=x)

        def share(rows):
            cols = None
            for s, e in _chunks(rows, chunk):
                cols = im2col_(x[s:e], kh, kw, stride, padding, dilation)
                # (C_out, n_chunk*OH*OW) -> (n_chunk, C_out, OH*OW) in the pass adding the bias
                y = _gemm(w2, cols, groups).reshape(cout, -1, oh * ow).transpose(1, 0, 2)
                if bias is None:
                    out[s:e] = y
                else:
                    xp.add(y, bias.reshape(cout, 1), out=out[s:e])
            return cols if rows[1] - rows[0] <= chunk else None

        cols = parallel(share, ctx.shares)
        kept = all(c is not None for c in cols)
        ctx.save_for_backward(x, weight, *(cols if kept else ()))
        return out.reshape(n, cout, oh, ow)

    @staticmethod
    def backward(ctx, grad):
        x, weight, *cols = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_w or need_x:
            if is_grad_enabled():  # create_graph: differentiable ops, the columns rebuilt
                gx, gw = _conv_grads_graph(ctx, x, weight, grad, need_x, need_w)
            elif ctx.winograd:
                vs = [v.data for v in cols]
                gx, gw = winograd_grads(ctx, x.shape, vs, grad.data, need_x, need_w)
            elif ctx.image_kernels:
                cols = [c.data for c in cols]
                gx, gw, gb = grads_images(ctx, x.data, weight.data, grad.data, cols, need_x,
                                          need_w)
                gb = gb if need_b else None
            else:
                gx, gw = _conv_grads(ctx, x.data, weight.data, grad.data, cols, need_x, need_w)
        if need_b and gb is None:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None


_BACKWARD_PIECE = 8 << 20  # bytes; 2-32 MiB measured, 8 the lowest peak at the same speed


def _conv_grads(ctx, x, weight, grad, cols, need_x, need_w):
    """``(dx, dW)`` on arrays, each share of the batch on its worker thread."""
    xp = get_array_module(x)
    cout = weight.shape[0]
    w2 = weight.reshape(cout, -1)
    (kh, kw), stride, padding, dilation = ctx.args
    im2col_, col2im_ = get_kernel("im2col", like=x), get_kernel("col2im", like=x)
    gx = xp.empty(x.shape, dtype=x.dtype) if need_x else None
    ohw = grad.shape[2] * grad.shape[3]
    # NOTE: backward walks each share in pieces of about _BACKWARD_PIECE bytes of columns: the
    # column gradient of a piece stays in cache for col2im, and the step's peak memory does not
    # hold a whole batch of column gradients beside the kept columns (measured: -30 MiB peak)
    step = max(1, min(ctx.chunk, _BACKWARD_PIECE // (w2.shape[1] * ohw * x.itemsize)))

    def share(i):
        gw, start = None, ctx.shares[i][0]
        for s, e in _chunks(ctx.shares[i], step):
            g2 = xp.ascontiguousarray(grad[s:e].transpose(1, 0, 2, 3)).reshape(cout, -1)
            if need_w:
                if cols:  # this piece's columns, a slice of the share's kept ones
                    c = cols[i].data[:, (s - start) * ohw : (e - start) * ohw]
                else:
                    c = im2col_(x[s:e], kh, kw, stride, padding, dilation)
                part = _grad_weight(g2, c, ctx.groups, xp.matmul)
                gw = part if gw is None else gw + part
            if need_x:
                dcols = _grad_cols(w2, g2, ctx.groups, xp.matmul)
                gx[s:e] = col2im_(dcols, (e - s, *x.shape[1:]), kh, kw, stride, padding, dilation)
        return gw

    parts = parallel(share, range(len(ctx.shares)))
    gw = sum(parts[1:], parts[0]).reshape(weight.shape) if need_w else None
    return gx, gw


def _conv_grads_graph(ctx, x, weight, grad, need_x, need_w):
    """``(dx, dW)`` with differentiable ops (double backward): one piece, columns rebuilt."""
    cout = weight.shape[0]
    w2 = weight.reshape(cout, -1)
    g2 = grad.permute(1, 0, 2, 3).reshape(cout, -1)  # (C_out, N*OH*OW)
    gw = gx = None
    if need_w:
        cols = Im2col.apply(x, *ctx.args)
        gw = _grad_weight(g2, cols, ctx.groups, matmul).reshape(weight.shape)
    if need_x:
        gx = Col2im.apply(_grad_cols(w2, g2, ctx.groups, matmul), x.shape, *ctx.args)
    return gx, gw


def _t(a):
    """The last two axes swapped, for Tensors and arrays alike."""
    return a.mT if isinstance(a, Tensor) else a.swapaxes(-1, -2)


def _grad_weight(g2, cols, groups, mm):
    """``dW = g2 @ cols^T``, per group (``mm``: ``matmul`` on Tensors or the array module's)."""
    if groups == 1:
        return mm(g2, _t(cols))
    gg = g2.reshape(groups, -1, g2.shape[1])
    return mm(gg, _t(cols.reshape(groups, -1, cols.shape[1]))).reshape(g2.shape[0], -1)


def _grad_cols(w2, g2, groups, mm):
    """``dcols = W^T @ g2``, per group."""
    if groups == 1:
        return mm(_t(w2), g2)
    wg = w2.reshape(groups, -1, w2.shape[1])
    return mm(_t(wg), g2.reshape(groups, -1, g2.shape[1])).reshape(-1, g2.shape[1])
