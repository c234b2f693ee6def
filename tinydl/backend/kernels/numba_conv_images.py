"""Per-image column kernels for the CPU convolution: im2col and col2im in the layout
``(N, K, OH*OW)`` (``K = C*KH*KW``), compiled with Numba.

Why a second layout beside ``numpy_ref``'s ``(K, N*OH*OW)``: with the image axis outermost,
``weight (C_out, K) @ cols[n] (K, OH*OW)`` is one image's NCHW block ``(C_out, OH*OW)``, so a
batched product writes the convolution's output in place, with no transpose pass after it, and
the upstream gradient ``(N, C_out, OH*OW)`` feeds the backward products as it is. For the small
layers (LeNet, the first layer of a CNN: C_out 6-32, K 9-150) those layout passes cost as much
as the thin GEMMs. An optional last row of ones (``ones=True``) folds the bias into the same
product: ``[W | b] @ [cols; 1]``, and its weight gradient's last column is the bias gradient.

Row ``(c*KH + i)*KW + j`` and column ``oh*OW + ow`` of image ``n``, as in ``numpy_ref``;
``conv_images_ref.im2col_images`` / ``col2im_images`` are the references the tests compare with.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from .numpy_ref import _geometry

__all__ = ["im2col_images", "col2im_images"]


@njit(cache=True, nogil=True)
def _im2col_images(xf, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rows, cf):
    ohw = oh * ow
    for b in range(n):
        for row in range(c * kh * kw):
            ci, i, j = row // (kh * kw), row // kw % kh, row % kw
            w0 = j * dw - pw  # input column of output column 0 at kernel column j
            lo = min(max(0, (-w0 + sw - 1) // sw), ow)  # output columns [lo, hi) inside [0, w)
            hi = max(min(ow, (w - 1 - w0) // sw + 1), lo)
            for y in range(oh):
                dst = uint64((b * rows + row) * ohw + y * ow)
                ih = y * sh + i * dh - ph
                if ih < 0 or ih >= h:
                    for xo in range(ow):
                        cf[dst + uint64(xo)] = 0
                    continue
                src = uint64(((b * c + ci) * h + ih) * w + w0 + lo * sw)
                for xo in range(lo):
                    cf[dst + uint64(xo)] = 0
                for t in range(hi - lo):
                    cf[dst + uint64(lo + t)] = xf[src + uint64(t * sw)]
                for xo in range(hi, ow):
                    cf[dst + uint64(xo)] = 0
        for row in range(c * kh * kw, rows):  # the bias row
            for t in range(ohw):
                cf[uint64((b * rows + row) * ohw + t)] = 1


def im2col_images(x, kh: int, kw: int, stride=1, padding=0, dilation=1, ones=False):
    """``x`` ``(N, C, H, W)`` -> ``(N, C*KH*KW [+1], OH*OW)``; see ``conv_images_ref.im2col_images``."""
    n, c, h, w = x.shape
    oh, ow, (sh, sw), (ph, pw), (dh, dw) = _geometry(x.shape, kh, kw, stride, padding, dilation)
    rows = c * kh * kw + bool(ones)
    cols = np.empty((n, rows, oh * ow), dtype=x.dtype)
    xf = np.ascontiguousarray(x).reshape(-1)
    geometry = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    _im2col_images(xf, *geometry, rows, cols.reshape(-1))
    return cols


@njit(cache=True, nogil=True)
def _col2im_images(cf, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rows, xf):
    ohw = oh * ow
    for b in range(n):
        for row in range(c * kh * kw):
            ci, i, j = row // (kh * kw), row // kw % kh, row % kw
            w0 = j * dw - pw
            lo = min(max(0, (-w0 + sw - 1) // sw), ow)
            hi = max(min(ow, (w - 1 - w0) // sw + 1), lo)
            for y in range(oh):
                ih = y * sh + i * dh - ph
                if ih < 0 or ih >= h:
                    continue
                src = uint64((b * rows + row) * ohw + y * ow + lo)
                dst = uint64(((b * c + ci) * h + ih) * w + w0 + lo * sw)
                for t in range(hi - lo):
                    xf[dst + uint64(t * sw)] += cf[src + uint64(t)]


def col2im_images(cols, x_shape, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col_images``: ``(N, K [+1], OH*OW)`` summed back into ``x_shape``
    (a row past ``K``, the bias row's gradient, is ignored); see ``conv_images_ref.col2im_images``."""
    n, c, h, w = x_shape
    oh, ow, (sh, sw), (ph, pw), (dh, dw) = _geometry(x_shape, kh, kw, stride, padding, dilation)
    out = np.zeros((n, c, h, w), dtype=cols.dtype)
    cf = np.ascontiguousarray(cols).reshape(-1)
    geometry = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    _col2im_images(cf, *geometry, cols.shape[1], out.reshape(-1))
    return out
