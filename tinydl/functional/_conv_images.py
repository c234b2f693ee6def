"""The CPU convolution in the per-image column layout (``numba_conv_images``).

``Conv2d`` takes this path for NumPy arrays with the Numba kernels and ``groups == 1``: each
image's columns ``(K+1, OH*OW)`` (the last row ones) meet ``[W | b]`` ``(C_out, K+1)`` in one
batched product that writes ``(N, C_out, OH*OW)``, already NCHW with the bias added. Backward
reads the upstream gradient as it is: ``dW`` (and, in its last column, the bias gradient) is
the sum over images of ``g[n] @ cols[n]^T``, and ``dcols = W^T @ g`` goes to
``col2im_images``. This saves the transpose passes of the ``(K, N*OH*OW)`` layout, which cost
as much as the GEMMs in small layers (measured at 64x1x28x28 -> 32, k3: 0.31 ms of layout
beside a 0.34 ms GEMM per thread's share of the forward).
"""

from __future__ import annotations

import numpy as np

from ..backend.kernels import active_kernels, get_kernel
from ..backend.threads import parallel

__all__ = ["image_kernels", "forward_images", "grads_images"]

_BACKWARD_PIECE = 8 << 20  # bytes of columns per backward piece, as in conv.py


# NOTE: below this many output pixels per image the per-image products are too small for BLAS
# to run well: at 128x6x14x14 -> 16, k5 (10x10 outputs) this path measured 2.3 / 6.9 ms
# forward / forward+backward against 1.95 / 6.0 for the (K, N*OH*OW) path; at 28x28 outputs
# it wins (1.05 / 3.6 against 1.8 / 4.8-5.5 ms at 64x1x28x28 -> 32, k3), 2 threads.
_MIN_PIXELS = 256


def image_kernels(x, groups, pixels):
    """``(im2col_images, col2im_images)`` when ``x`` runs on the Numba kernels with one group
    and at least ``_MIN_PIXELS`` output ``pixels`` per image, else None (the
    ``(K, N*OH*OW)`` path: GPU arrays, the NumPy reference kernels, groups, small outputs)."""
    if groups != 1 or type(x) is not np.ndarray or pixels < _MIN_PIXELS:
        return None
    get_kernel("im2col", like=x)  # loads Numba, or falls back to the reference with a warning
    if active_kernels() != "numba":
        return None
    from ..backend.kernels import numba_conv_images as kernels

    return kernels.im2col_images, kernels.col2im_images


def _chunks(share, chunk):
    start, stop = share
    return [(s, min(s + chunk, stop)) for s in range(start, stop, chunk)]


def forward_images(ctx, x, weight, bias, oh, ow):
    """``conv2d`` on arrays; keeps each share's columns in ``ctx.cols`` when it was one chunk."""
    im2col_images, _ = ctx.image_kernels
    (kh, kw), stride, padding, dilation = ctx.args
    n, cout = x.shape[0], weight.shape[0]
    w2 = weight.reshape(cout, -1)
    if bias is not None:  # [W | b]: the ones row of the columns adds the bias in the product
        w2 = np.concatenate([w2, bias.reshape(cout, 1)], axis=1)
    out = np.empty((n, cout, oh * ow), dtype=x.dtype)
    ones, chunk = bias is not None, ctx.chunk

    def share(rows):
        cols = None
        for s, e in _chunks(rows, chunk):
            cols = im2col_images(x[s:e], kh, kw, stride, padding, dilation, ones=ones)
            np.matmul(w2, cols, out=out[s:e])
        return cols if rows[1] - rows[0] <= chunk else None

    cols = parallel(share, ctx.shares)
    return out.reshape(n, cout, oh, ow), cols if all(c is not None for c in cols) else []


def grads_images(ctx, x, weight, grad, cols, need_x, need_w):
    """``(dx, dW, db)`` on arrays, each share of the batch on its worker thread; ``db`` is
    the last column of the weight gradient when the columns carry the ones row (else None)."""
    has_bias = ctx.ones
    im2col_images, col2im_images = ctx.image_kernels
    (kh, kw), stride, padding, dilation = ctx.args
    cout, k = weight.shape[0], weight[0].size
    wt = np.ascontiguousarray(weight.reshape(cout, k).T)
    g3 = np.ascontiguousarray(grad).reshape(grad.shape[0], cout, -1)
    gx = np.empty(x.shape, dtype=x.dtype) if need_x else None
    # NOTE: pieces of about _BACKWARD_PIECE bytes of columns: a piece's column gradient stays in
    # cache for col2im, and the peak never holds a whole batch of column gradients
    step = max(1, min(ctx.chunk, _BACKWARD_PIECE // ((k + 1) * g3.shape[2] * x.itemsize)))

    def share(i):
        gw, start = None, ctx.shares[i][0]
        for s, e in _chunks(ctx.shares[i], step):
            g = g3[s:e]
            if need_w:
                if cols:  # this piece's kept columns (with the ones row when there is a bias)
                    c = cols[i][s - start : e - start]
                else:
                    c = im2col_images(x[s:e], kh, kw, stride, padding, dilation, ones=has_bias)
                part = np.matmul(g, c.transpose(0, 2, 1)).sum(0)
                gw = part if gw is None else gw + part
            if need_x:
                gx[s:e] = col2im_images(
                    np.matmul(wt, g), (e - s, *x.shape[1:]), kh, kw, stride, padding, dilation
                )
        return gw

    parts = parallel(share, range(len(ctx.shares)))
    if not need_w:
        return gx, None, None
    gw = sum(parts[1:], parts[0])
    db = gw[:, k] if has_bias else None
    return gx, np.ascontiguousarray(gw[:, :k]).reshape(weight.shape), db
