"""References for the per-image column layout ``(N, C*KH*KW [+1], OH*OW)`` of
``numba_conv_images``: ``numpy_ref``'s im2col/col2im with the image axis moved outermost.

Plain NumPy (array-module generic), the oracle the tests compare the Numba kernels with.
"""

from __future__ import annotations

from ..device import get_array_module
from .numpy_ref import col2im, im2col

__all__ = ["im2col_images", "col2im_images"]


def im2col_images(x, kh: int, kw: int, stride=1, padding=0, dilation=1, ones=False):
    """``x`` ``(N, C, H, W)`` -> ``(N, C*KH*KW, OH*OW)``: image ``n``'s block is its columns of
    ``numpy_ref.im2col``. ``ones=True`` appends a row of ones to each block (the bias row)."""
    xp = get_array_module(x)
    n = x.shape[0]
    cols = im2col(x, kh, kw, stride, padding, dilation)
    cols = cols.reshape(cols.shape[0], n, -1).transpose(1, 0, 2)
    if ones:
        cols = xp.concatenate([cols, xp.ones((n, 1, cols.shape[2]), dtype=cols.dtype)], axis=1)
    return xp.ascontiguousarray(cols)


def col2im_images(cols, x_shape, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col_images`` (without its ones row): ``(N, C*KH*KW [+1], OH*OW)``
    summed back into an array of ``x_shape``; a row past ``C*KH*KW`` is ignored."""
    k = x_shape[1] * kh * kw
    flat = cols[:, :k].transpose(1, 0, 2).reshape(k, -1)
    return col2im(flat, x_shape, kh, kw, stride, padding, dilation)
