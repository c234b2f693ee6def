"""Per-image column kernels for the CPU convolution: im2col and col2im in the layout
``(N, K, OH*OW)`` (``K = C*KH*KW``), the compiled loops of ``numba_cpu`` with other strides.

Why a second layout beside ``numpy_ref``'s ``(K, N*OH*OW)``: with the image axis outermost,
``weight (C_out, K) @ cols[n] (K, OH*OW)`` is one image's NCHW block ``(C_out, OH*OW)``, so a
batched product writes the convolution's output in place, with no transpose pass after it, and
the upstream gradient ``(N, C_out, OH*OW)`` feeds the backward products as it is. For the small
layers (LeNet, the first layer of a CNN: C_out 6-32, K 9-150) those layout passes cost as much
as the thin GEMMs. An optional last row of ones (``ones=True``) folds the bias into the same
product: ``[W | b] @ [cols; 1]``, and its weight gradient's last column is the bias gradient.

Row ``(c*KH + i)*KW + j`` and column ``oh*OW + ow`` of image ``n``, as in ``numpy_ref``;
``conv_images_ref`` holds the references the tests compare with.
"""

from __future__ import annotations

import numpy as np

from .numba_cpu import _col2im, _im2col
from .numpy_ref import _geometry

__all__ = ["im2col_images", "col2im_images"]


def im2col_images(x, kh: int, kw: int, stride=1, padding=0, dilation=1, ones=False):
    """``x`` ``(N, C, H, W)`` -> ``(N, C*KH*KW [+1], OH*OW)``; see
    ``conv_images_ref.im2col_images``."""
    n, c, h, w = x.shape
    oh, ow, (sh, sw), (ph, pw), (dh, dw) = _geometry(x.shape, kh, kw, stride, padding, dilation)
    rows = c * kh * kw + bool(ones)
    cols = np.empty((n, rows, oh * ow), dtype=x.dtype)
    xf = np.ascontiguousarray(x).reshape(-1)
    # NOTE: the loops stay row-major over the kernel rows (the image inside): measured faster
    # than image-major here (0.37 against 0.47-0.55 ms at 64x6x14x14, k5)
    geometry = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    _im2col(xf, *geometry, cols.reshape(-1), oh * ow, rows * oh * ow)
    if ones:
        cols[:, -1] = 1
    return cols


def col2im_images(cols, x_shape, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col_images``: ``(N, K [+1], OH*OW)`` summed back into ``x_shape``
    (a row past ``K``, the bias row's gradient, is ignored); see
    ``conv_images_ref.col2im_images``."""
    n, c, h, w = x_shape
    oh, ow, (sh, sw), (ph, pw), (dh, dw) = _geometry(x_shape, kh, kw, stride, padding, dilation)
    out = np.zeros((n, c, h, w), dtype=cols.dtype)
    cf = np.ascontiguousarray(cols).reshape(-1)
    geometry = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    _col2im(cf, *geometry, out.reshape(-1), oh * ow, cols.shape[1] * oh * ow)
    return out
