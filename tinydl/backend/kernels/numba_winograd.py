"""Numba Winograd F(2x2, 3x3) transforms: ``winograd``'s signatures, one compiled loop each.

Same layouts and results as the NumPy reference ``tinydl.backend.kernels.winograd`` (the tests
compare them). Each loop walks images, channels and tile rows, with the tile column innermost
so that the 16 planes of ``V``/``M`` are each read or written contiguously. The transforms are
adds and subtracts written out (no multiplies: F(2x2, 3x3)'s ``B`` and ``A`` hold only 0 and
+-1), kept in the input's dtype. Serial like ``numba_cpu`` (``nogil``): the convolution calls
them from its worker threads, one share of the batch each.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .winograd import tiles, weight_transform, weight_transform_adjoint

__all__ = [
    "weight_transform",
    "weight_transform_adjoint",
    "input_transform",
    "input_transform_adjoint",
    "output_transform",
    "output_transform_adjoint",
]


def _pad(x, padding, th, tw):
    """``x`` zero-padded to whole tiles, ``(N, C, 2*TH + 2, 2*TW + 2)``: the loops then read
    every tile without a bounds check (the copy costs less than the checks did)."""
    n, c, h, w = x.shape
    ph, pw = padding
    if (ph, pw) == (0, 0) and (h, w) == (2 * th + 2, 2 * tw + 2):
        return np.ascontiguousarray(x)
    out = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


@njit(cache=True, nogil=True)
def _input_tf(xp, th, tw, v):
    n, c, hp, wp = xp.shape
    e = np.empty((4, wp), xp.dtype)
    for b in range(n):
        for ci in range(c):
            for ty in range(th):
                r0, r1 = xp[b, ci, 2 * ty], xp[b, ci, 2 * ty + 1]
                r2, r3 = xp[b, ci, 2 * ty + 2], xp[b, ci, 2 * ty + 3]
                for k in range(wp):  # e = B^T d for the tile row, every column at once
                    e[0, k] = r0[k] - r2[k]
                    e[1, k] = r1[k] + r2[k]
                    e[2, k] = r2[k] - r1[k]
                    e[3, k] = r1[k] - r3[k]
                t0 = (b * th + ty) * tw
                for i in range(4):  # V = e B, tile by tile
                    ei = e[i]
                    v0, v1 = v[4 * i, ci, t0 : t0 + tw], v[4 * i + 1, ci, t0 : t0 + tw]
                    v2, v3 = v[4 * i + 2, ci, t0 : t0 + tw], v[4 * i + 3, ci, t0 : t0 + tw]
                    for tx in range(tw):
                        a0, a1, a2, a3 = ei[2 * tx], ei[2 * tx + 1], ei[2 * tx + 2], ei[2 * tx + 3]
                        v0[tx] = a0 - a2
                        v1[tx] = a1 + a2
                        v2[tx] = a2 - a1
                        v3[tx] = a1 - a3


def input_transform(x, padding):
    """``x`` ``(N, C, H, W)`` -> ``V`` ``(16, C, N*TH*TW)``; see ``winograd.input_transform``."""
    n, c, h, w = x.shape
    _, _, th, tw = tiles(h, w, padding)
    v = np.empty((16, c, n * th * tw), dtype=x.dtype)
    _input_tf(_pad(x, padding, th, tw), th, tw, v)
    return v


@njit(cache=True, nogil=True)
def _input_adj(dv, th, tw, dxp):
    n, c, hp, wp = dxp.shape
    e = np.empty((4, wp), dv.dtype)
    for b in range(n):
        for ci in range(c):
            for ty in range(th):
                t0 = (b * th + ty) * tw
                e[:] = 0
                for i in range(4):  # e[i] = (dV B^T)[i] for every tile of the row, added up
                    ei = e[i]
                    v0, v1 = dv[4 * i, ci, t0 : t0 + tw], dv[4 * i + 1, ci, t0 : t0 + tw]
                    v2, v3 = dv[4 * i + 2, ci, t0 : t0 + tw], dv[4 * i + 3, ci, t0 : t0 + tw]
                    for tx in range(tw):
                        a0, a1, a2, a3 = v0[tx], v1[tx], v2[tx], v3[tx]
                        ei[2 * tx] += a0
                        ei[2 * tx + 1] += a1 - a2 + a3
                        ei[2 * tx + 2] += a1 + a2 - a0
                        ei[2 * tx + 3] -= a3
                r0, r1 = dxp[b, ci, 2 * ty], dxp[b, ci, 2 * ty + 1]
                r2, r3 = dxp[b, ci, 2 * ty + 2], dxp[b, ci, 2 * ty + 3]
                for k in range(wp):  # B e, added into the tile row's four input rows
                    r0[k] += e[0, k]
                    r1[k] += e[1, k] - e[2, k] + e[3, k]
                    r2[k] += e[1, k] + e[2, k] - e[0, k]
                    r3[k] -= e[3, k]


def input_transform_adjoint(dv, x_shape, padding, out=None):
    """``dV`` -> ``dX`` of ``x_shape``; see ``winograd.input_transform_adjoint``."""
    n, c, h, w = x_shape
    ph, pw = padding
    _, _, th, tw = tiles(h, w, padding)
    dxp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=dv.dtype)
    _input_adj(np.ascontiguousarray(dv), th, tw, dxp)
    dx = dxp[:, :, ph : ph + h, pw : pw + w]
    if out is None:
        return np.ascontiguousarray(dx)
    out[...] = dx
    return out


@njit(cache=True, nogil=True)
def _output_tf(m, th, tw, bias, has_bias, y):
    n, cout = y.shape[:2]
    for b in range(n):
        for co in range(cout):
            bb = bias[co] if has_bias else bias[0] * 0
            for ty in range(th):
                t0 = (b * th + ty) * tw
                y0, y1 = y[b, co, 2 * ty], y[b, co, 2 * ty + 1]
                for tx in range(tw):
                    t = t0 + tx
                    p0 = m[0, co, t] + m[4, co, t] + m[8, co, t]
                    p1 = m[1, co, t] + m[5, co, t] + m[9, co, t]
                    p2 = m[2, co, t] + m[6, co, t] + m[10, co, t]
                    p3 = m[3, co, t] + m[7, co, t] + m[11, co, t]
                    q0 = m[4, co, t] - m[8, co, t] - m[12, co, t]
                    q1 = m[5, co, t] - m[9, co, t] - m[13, co, t]
                    q2 = m[6, co, t] - m[10, co, t] - m[14, co, t]
                    q3 = m[7, co, t] - m[11, co, t] - m[15, co, t]
                    y0[2 * tx] = p0 + p1 + p2 + bb
                    y0[2 * tx + 1] = p1 - p2 - p3 + bb
                    y1[2 * tx] = q0 + q1 + q2 + bb
                    y1[2 * tx + 1] = q1 - q2 - q3 + bb


def output_transform(m, n, oh, ow, bias=None, out=None):
    """``M`` -> ``Y`` ``(N, C_out, OH, OW)`` plus ``bias``; see ``winograd.output_transform``.
    ``out`` must be C-contiguous when given."""
    cout = m.shape[1]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    whole = (2 * th, 2 * tw) == (oh, ow)
    if whole:
        y = np.empty((n, cout, oh, ow), dtype=m.dtype) if out is None else out
    else:  # odd sizes: whole tiles into a scratch array, then cut
        y = np.empty((n, cout, 2 * th, 2 * tw), dtype=m.dtype)
    b = np.zeros(1, m.dtype) if bias is None else np.ascontiguousarray(bias, dtype=m.dtype)
    _output_tf(np.ascontiguousarray(m), th, tw, b, bias is not None, y)
    if whole:
        return y
    if out is None:
        return np.ascontiguousarray(y[:, :, :oh, :ow])
    out[...] = y[:, :, :oh, :ow]
    return out


@njit(cache=True, nogil=True)
def _output_adj(dyp, th, tw, dm):
    n, cout = dyp.shape[:2]
    for b in range(n):
        for co in range(cout):
            for ty in range(th):
                t0 = (b * th + ty) * tw
                g0, g1 = dyp[b, co, 2 * ty], dyp[b, co, 2 * ty + 1]
                for i in range(4):
                    # q = A dY has the rows (g0, g0 + g1, g0 - g1, -g1); dM = q A^T. One row
                    # of q at a time: four planes written per pass (sixteen at once ran 3x slower)
                    s0 = 1 if i < 3 else 0
                    s1 = 0 if i == 0 else (1 if i == 1 else -1)
                    d0, d1 = dm[4 * i, co, t0 : t0 + tw], dm[4 * i + 1, co, t0 : t0 + tw]
                    d2, d3 = dm[4 * i + 2, co, t0 : t0 + tw], dm[4 * i + 3, co, t0 : t0 + tw]
                    for tx in range(tw):
                        a = s0 * g0[2 * tx] + s1 * g1[2 * tx]
                        c = s0 * g0[2 * tx + 1] + s1 * g1[2 * tx + 1]
                        d0[tx] = a
                        d1[tx] = a + c
                        d2[tx] = a - c
                        d3[tx] = -c


def output_transform_adjoint(dy):
    """``dY`` -> ``dM`` ``(16, C_out, N*TH*TW)``; see ``winograd.output_transform_adjoint``."""
    n, cout, oh, ow = dy.shape
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    if (2 * th, 2 * tw) == (oh, ow):
        dyp = np.ascontiguousarray(dy)
    else:  # odd sizes: zeros past the last row/column of the output
        dyp = np.zeros((n, cout, 2 * th, 2 * tw), dtype=dy.dtype)
        dyp[:, :, :oh, :ow] = dy
    dm = np.empty((16, cout, n * th * tw), dtype=dy.dtype)
    _output_adj(dyp, th, tw, dm)
    return dm
