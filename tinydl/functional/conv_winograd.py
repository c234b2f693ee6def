"""The Winograd path of ``Conv2d`` on the CPU: 3x3, stride 1, F(2x2, 3x3) (2.25x fewer
multiplies) or, for outputs of 28 pixels a side and more, F(4x4, 3x3) (4x fewer).

Forward: ``U = G W G^T`` once, then per share of the batch (one per worker thread, see
``tinydl.backend.threads``) ``V = B^T d B`` for the share's tiles, kept for the weight gradient,
and in pieces of images the batched GEMM ``M = U @ V`` ``(a*a, C_out, C_in) @ (a*a, C_in, T)``
(``a = 4`` or 6) and ``Y = A^T M A + bias`` written straight into the output. No im2col column
matrix: F(2x2)'s ``V`` holds 16 values per 2x2 output tile (4 per pixel and channel, plus one
unused tile per tile row), F(4x4)'s 36 per 4x4 tile (2.25 per pixel), where the columns hold 9
(the 28x28x32 layer at batch 128: 55 MB of F(2x2) ``V``, 33 MB of F(4x4), 115 MB of columns).

Backward, per share and piece: ``dM = A dY A^T``, ``dU += dM @ V^T`` (``dW = G^T dU G`` once
the shares are summed), ``dV = U^T @ dM`` and ``dX = B dV B^T`` with the overlapping tiles
adding up; each share owns its images, so the scatter has no races. The transforms are
``tinydl.backend.kernels.numba_winograd`` and ``numba_winograd4`` (reference for both:
``tinydl.backend.kernels.winograd``).
"""

from __future__ import annotations

import numpy as np

from ..backend.kernels import active_kernels, available_kernels, get_im2col_budget
from ..backend.kernels.winograd import tiles_per_image
from ..backend.threads import get_num_threads, parallel, split

__all__ = ["use_winograd", "winograd_tile", "winograd_forward", "winograd_grads"]

# NOTE: measured at batch 128, 28x28 -> 32 channels, float32, 2 threads, fwd+bwd Winograd /
# im2col (medians of 9 alternated rounds, a loaded 2-core machine): C_in 1: 3.1x, 4: 1.5x,
# 8: 1.15x slower (tiny GEMMs; the transforms move 16 values per 4 pixels), C_in 16: 0.94x,
# 32: 0.80x. Hence Winograd from 16 input channels up.
MIN_IN_CHANNELS = 16
# NOTE: up to twice as many output as input channels. With the transforms written as
# unit-stride loops (2026-12-01; batch 128, 2 threads, fwd+bwd, each path forced, medians of
# 7 alternated rounds, im2col / F(2x2) / F(4x4) ms): 32->64 at 14x14 29.8 / 23.4 / 28.7,
# 64->128 at 14x14 78.0 / 63.9 / 134.5, 16->32 at 28x28 33.6 / 26.4 / 21.5, 32->64 at 28x28
# 97.1 / 65.6 / 54.8; only 16->32 at 14x14 lost (12.0 / 12.9, ranges overlapping, and the
# rule below keeps it on im2col). Before those loops the widening 32->64 at 14x14 lost
# (25.7-27.0 vs 23.0-24.6), hence an older rule of no widening.
MAX_WIDENING = 2  # C_out / C_in
# NOTE: F(2x2) only for enough channels times output side. Same runs: 32->32 at 14x14 22.2 /
# 19.2 (C_in x side 448), 16->16 at 14x14 9.4 / 8.6 (224, too close to call), 64->64 at 7x7
# 18.2 / 24.2 (the side rule below: 8 tile slots a row for 7 pixels), 128->128 at 14x14 192 /
# 191, 64->64 at 14x14 58.6 / 47.1.
MIN_CHANNELS_X_SIDE = 32 * 14
MIN_SIDE = 14  # output pixels along the shorter side: below it the unused tiles cost too much

# NOTE: bytes of M (and dV) per piece of a share, so that they stay in cache between the GEMM
# and the transform. Measured on the MnistCNN layers, one thread, 64 images, float32 (medians
# of 9 alternated rounds, fwd / bwd): 8 MiB 180 / 166 ms at 32->32 28x28, 1 MiB 35 / 54,
# 256 KiB 30 / 45, 128 KiB 36 / 38; at 64->64 14x14 8 MiB 74 / 253, 256 KiB 26 / 32. Once the
# transforms vectorized, the GEMMs' width (N = 56 tiles an image at 64->64 14x14) mattered
# more: fwd+bwd of 64->64 at 14x14, 2 threads, batch 128, 6 alternated pairs: 256 KiB 37-56 ms
# (median 52), 1 MiB 35-50 (40), faster in 5 pairs of 6; 2 MiB against 1 MiB slower in 4 of 6.
# (One thread alone gained up to 4 MiB, 23-26 against 34-38 ms: with two shares the larger
# pieces stop paying, presumably in the shared cache.) F(4x4) ran 15-20% faster with 1 MiB of
# M than with 256 KiB (fwd+bwd 16->16 and 32->32 at 28x28, 3 alternated runs), the same with
# 2-4 MiB on one thread.
_PIECE = 1 << 20

# NOTE: F(4x4, 3x3) from a 28-pixel output side up, for any layer the channel rules above
# admit (16 input channels, at most 2x widening). One thread, 64 images, float32, ms per pass
# (F(2x2) / F(4x4)), 32->32 at 28x28, with the vectorized transforms: GEMMs 9.1-9.6 / 5.3-5.4
# each, transforms in 3.8 / 4.3, out 2.7 / 2.7, out-adjoint 3.3 / 3.3, in-adjoint 3.2 / 5.6;
# all passes 41 / 32. Whole layer fwd+bwd, 2 threads, batch 128, medians of 3-4 alternated
# runs (before that fix): 32->32 at 28x28 46.9 -> 37.1 ms, 16->16 at 28x28 27 (im2col, the
# F(2x2) rule) -> 16.1 ms. At 14x14 F(4x4) lost (64->64, fwd+bwd, 2 threads, medians of 5
# alternated runs: 61.3 vs 52.7 ms): 16 output rows computed per 14 and smaller GEMMs. Float32 error grows
# about 10x (max relative 2-5e-6 against 3-5e-7, tests/functional/test_conv_winograd.py).
MIN_SIDE_F4 = 28


def use_winograd(x, weight, stride, padding, dilation, groups) -> int:
    """The output tile side (2 or 4, see ``winograd_tile``) when ``Conv2d`` takes the Winograd
    path, else 0. It does for NumPy arrays with the ``"numba"`` CPU kernels active (the
    ``"numpy"`` reference stays on im2col), a 3x3 kernel, stride 1, no dilation, no groups,
    float32/float64, at least ``MIN_IN_CHANNELS`` input channels and at most ``MAX_WIDENING``
    times as many output channels, and the batch's ``V`` within the im2col budget (larger
    batches take im2col's chunked path); F(2x2) also needs an output of at least ``MIN_SIDE``
    pixels a side and ``MIN_CHANNELS_X_SIDE`` input channels times that side."""
    if type(x) is not np.ndarray or x.dtype not in (np.float32, np.float64) or not len(x):
        return 0
    if weight.shape[2:] != (3, 3) or groups != 1 or stride != (1, 1) or dilation != (1, 1):
        return 0
    if x.shape[1] < MIN_IN_CHANNELS or weight.shape[0] > MAX_WIDENING * x.shape[1]:
        return 0
    n, c, h, w = x.shape
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    tile = winograd_tile(oh, ow)
    if tile == 2 and (min(oh, ow) < MIN_SIDE or c * min(oh, ow) < MIN_CHANNELS_X_SIDE):
        return 0
    if active_kernels() != "numba":
        return 0
    tiles = tiles_per_image(-(-oh // tile), -(-ow // tile))
    if (tile + 2) ** 2 * c * n * tiles * x.itemsize > get_im2col_budget():
        return 0
    return tile if "numba" in available_kernels() else 0


def winograd_tile(oh: int, ow: int) -> int:
    """F(4x4, 3x3) for outputs of at least ``MIN_SIDE_F4`` pixels a side, else F(2x2, 3x3)."""
    return 4 if min(oh, ow) >= MIN_SIDE_F4 else 2


def _kernels(tile):
    from ..backend.kernels import numba_winograd, numba_winograd4

    return numba_winograd if tile == 2 else numba_winograd4


def _pieces(share, per_image: int):
    start, stop = share
    step = max(1, _PIECE // max(per_image, 1))
    return [(s, min(s + step, stop)) for s in range(start, stop, step)]


def winograd_forward(ctx, x, weight, bias, padding, tile=2):
    """``conv2d`` of ``x`` by ``weight`` (3x3, stride 1) with ``padding`` by F(tile x tile,
    3x3); keeps ``U`` and each share's ``V`` on ``ctx`` for ``winograd_grads``."""
    wk = _kernels(tile)
    n, cin, h, w = x.shape
    cout = weight.shape[0]
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    t = tiles_per_image(-(-oh // tile), -(-ow // tile))
    u = wk.weight_transform(weight)
    out = np.empty((n, cout, oh, ow), dtype=x.dtype)
    per_image = len(u) * cout * t * x.itemsize

    def share(rows):
        v = wk.input_transform(x[rows[0] : rows[1]], padding)
        for s, e in _pieces(rows, per_image):
            vs = v[:, :, (s - rows[0]) * t : (e - rows[0]) * t]
            wk.output_transform(np.matmul(u, vs), e - s, oh, ow, bias, out=out[s:e])
        return v

    ctx.wino_shares = split(n, get_num_threads())
    ctx.wino_u, ctx.wino_padding, ctx.wino_tile = u, padding, tile
    return out, parallel(share, ctx.wino_shares)


def winograd_grads(ctx, x_shape, vs, grad, need_x, need_w):
    """``(dx, dW)`` from the upstream ``grad`` and the kept ``V`` of each share."""
    u, padding, tile = ctx.wino_u, ctx.wino_padding, ctx.wino_tile
    wk = _kernels(tile)
    cin, cout = u.shape[2], u.shape[1]
    t = tiles_per_image(-(-grad.shape[2] // tile), -(-grad.shape[3] // tile))
    gx = np.empty(x_shape, dtype=grad.dtype) if need_x else None
    ut = u.transpose(0, 2, 1)
    per_image = len(u) * (cin + cout) * t * grad.itemsize

    def share(i):
        rows, du = ctx.wino_shares[i], None
        for s, e in _pieces(rows, per_image):
            dm = wk.output_transform_adjoint(grad[s:e])
            if need_w:
                v = vs[i][:, :, (s - rows[0]) * t : (e - rows[0]) * t]
                part = np.matmul(dm, v.transpose(0, 2, 1))
                du = part if du is None else du + part
            if need_x:
                shape = (e - s, *x_shape[1:])
                wk.input_transform_adjoint(np.matmul(ut, dm), shape, padding, out=gx[s:e])
        return du

    parts = parallel(share, range(len(ctx.wino_shares)))
    gw = wk.weight_transform_adjoint(sum(parts[1:], parts[0])) if need_w else None
    return gx, gw
