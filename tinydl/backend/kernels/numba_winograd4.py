"""Numba Winograd F(4x4, 3x3) transforms: ``winograd``'s signatures with ``tile=4``, one
compiled loop each.

The layout is ``numba_winograd``'s (F(2x2)) with 6x6 input tiles at stride 4: each image plane
is split into its 16 *phases* (rows and columns of the zero-padded plane modulo 4, ``TH + 1``
rows of ``R = TW + 1`` each, flat), so tile ``(ty, tx)``'s rows 0-3 are phases at flat offset
``f = ty*R + tx`` and rows 4-5 the first two phases at ``f + R`` (columns likewise at ``f`` and
``f + 1``). Every transform is then a few long unit-stride loops over ``f`` that LLVM
vectorizes. The 6-point transforms are written out (``_bt6`` and friends) so that no zero of
``B`` or ``A`` multiplies a value: a NaN or inf reaches every output whose window holds it and
can reach other outputs of the 4x4 output tiles whose 6x6 input holds it (F(4x4)'s ``B`` has
few zeros to keep it out), nothing beyond. Serial (``nogil``): the convolution calls them from
its worker threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import winograd as _ref
from .numba_winograd import wrappers

__all__ = [
    "weight_transform",
    "weight_transform_adjoint",
    "input_transform",
    "input_transform_adjoint",
    "output_transform",
    "output_transform_adjoint",
]


def weight_transform(weight):
    """``weight`` -> ``U`` ``(36, C_out, C_in)``; see ``winograd.weight_transform``."""
    return _ref.weight_transform(weight, 4)


def weight_transform_adjoint(du):
    """``dU`` ``(36, C_out, C_in)`` -> ``dW``; see ``winograd.weight_transform_adjoint``."""
    return _ref.weight_transform_adjoint(du, 4)


# NOTE: as in ``numba_winograd``, loops index plain ``f`` on views cut to the shifted ranges
# (a signed ``a[f + r]`` keeps LLVM from vectorizing), and the 6-point transforms scale by 2,
# 4, 5 and 8 with additions: an int coefficient times a float32 would compute in float64.


@njit(cache=True, nogil=True, inline="always")
def _x2(a):
    return a + a


@njit(cache=True, nogil=True, inline="always")
def _x4(a):
    return _x2(a + a)


@njit(cache=True, nogil=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):
    """``B^T d`` for one column of 6."""
    return (
        _x4(d0 - d2) - d2 + d4,
        d3 + d4 - _x4(d1 + d2),
        d4 - d3 + _x4(d1 - d2),
        d4 - d2 + _x2(d3 - d1),
        d4 - d2 + _x2(d1 - d3),
        _x4(d1 - d3) - d3 + d5,
    )


@njit(cache=True, nogil=True, inline="always")
def _b6(g0, g1, g2, g3, g4, g5):
    """``B g``: the adjoint of ``_bt6``."""
    return (
        _x4(g0),
        _x4(g2 - g1 + g5) + _x2(g4 - g3),
        -_x4(g0 + g1 + g2) - g0 - g3 - g4,
        g1 - g2 + _x2(g3 - g4) - _x4(g5) - g5,
        g0 + g1 + g2 + g3 + g4,
        g5,
    )


@njit(cache=True, nogil=True, inline="always")
def _at6(m0, m1, m2, m3, m4, m5):
    """``A^T m``: 6 values to 4."""
    p, q = m1 + m2, m1 - m2
    s, t = m3 + m4, m3 - m4
    return m0 + p + s, q + _x2(t), p + _x4(s), q + _x4(_x2(t)) + m5


@njit(cache=True, nogil=True, inline="always")
def _a6(g0, g1, g2, g3):
    """``A g``: the adjoint of ``_at6``."""
    e, o = g0 + g2, g1 + g3
    e4, o2 = g0 + _x4(g2), _x2(g1) + _x4(_x2(g3))
    return g0, e + o, e - o, e4 + o2, e4 - o2, g3


@njit(cache=True, nogil=True, inline="always")
def _six(a, first, step):
    """Rows ``first + step*l`` (``l`` = 0..5) of the 2-D ``a``: one 6-point transform's
    operands or results."""
    return (
        a[first],
        a[first + step],
        a[first + 2 * step],
        a[first + 3 * step],
        a[first + 4 * step],
        a[first + 5 * step],
    )


@njit(cache=True, nogil=True, inline="always")
def _six_planes(a, first, step, ch, t0, count):
    """``a[first + step*l, ch, t0 : t0 + count]`` for ``l`` = 0..5: six planes of ``V`` or
    ``M`` (``(36, C, T)``) for one image and channel."""
    return (
        a[first, ch, t0 : t0 + count],
        a[first + step, ch, t0 : t0 + count],
        a[first + 2 * step, ch, t0 : t0 + count],
        a[first + 3 * step, ch, t0 : t0 + count],
        a[first + 4 * step, ch, t0 : t0 + count],
        a[first + 5 * step, ch, t0 : t0 + count],
    )


@njit(cache=True, nogil=True, inline="always")
def _phase_rows(phases, base, o, pw, quarter):
    """The four phase rows that columns ``4k + q`` (``q`` = 0..3) of one plane row land in,
    cut to ``quarter`` entries from the first."""
    a0, a1, a2, a3 = o + pw // 4, o + (pw + 1) // 4, o + (pw + 2) // 4, o + (pw + 3) // 4
    return (
        phases[base + pw % 4, a0 : a0 + quarter],
        phases[base + (pw + 1) % 4, a1 : a1 + quarter],
        phases[base + (pw + 2) % 4, a2 : a2 + quarter],
        phases[base + (pw + 3) % 4, a3 : a3 + quarter],
    )


@njit(cache=True, nogil=True)
def _to_phases(plane, ph, pw, r, out):
    """``out[4*(i % 4) + j % 4, (i//4)*R + j//4] = plane[i - ph, j - pw]`` in padded
    coordinates ``(i, j)``. Other entries are left as they are: the callers' buffers start
    zeroed and only ever receive the same positions."""
    h, w = plane.shape
    quarter = w // 4  # columns (4k .. 4k + 3): one loop of four unit-stride stores
    for i in range(h):
        ip = i + ph
        o, base = (ip // 4) * r, 4 * (ip % 4)
        row = plane[i]
        s0, s1, s2, s3 = _phase_rows(out, base, o, pw, quarter)
        for k in range(quarter):
            s0[k], s1[k], s2[k], s3[k] = row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3]
        for j in range(4 * quarter, w):
            jp = j + pw
            out[base + jp % 4, o + jp // 4] = row[j]


@njit(cache=True, nogil=True)
def _from_phases(phases, ph, pw, r, plane):
    """The inverse gather of ``_to_phases``: ``plane[i, j] = phases[…]`` for every pixel."""
    h, w = plane.shape
    quarter = w // 4
    for i in range(h):
        ip = i + ph
        o, base = (ip // 4) * r, 4 * (ip % 4)
        row = plane[i]
        s0, s1, s2, s3 = _phase_rows(phases, base, o, pw, quarter)
        for k in range(quarter):
            row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3] = s0[k], s1[k], s2[k], s3[k]
        for j in range(4 * quarter, w):
            jp = j + pw
            row[j] = phases[base + jp % 4, o + jp // 4]


# NOTE: images outside, channels inside, unlike ``numba_winograd``: channels outside measured
# slower here (input transform of 128x32x28x28 on two threads 6.2 -> 7.2 ms, output adjoint
# 4.3 -> 4.8; the input adjoint and output transform unchanged).
@njit(cache=True, nogil=True)
def _input_tf(x, ph, pw, th, tw, v):
    n, c = x.shape[:2]
    r = tw + 1
    f_all = th * r
    g = f_all + 1
    p = np.zeros((16, (th + 1) * r + 1), x.dtype)
    e = np.empty((24, g), x.dtype)  # B^T down the columns: e[4*row + column phase]
    for b in range(n):
        t0 = b * f_all
        for ci in range(c):
            _to_phases(x[b, ci], ph, pw, r, p)
            for pb in range(4):  # tile rows 0-3 = row phases at f, rows 4-5 = phases 0-1 at f+R
                d0, d1, d2, d3 = p[pb, :g], p[4 + pb, :g], p[8 + pb, :g], p[12 + pb, :g]
                d4, d5 = p[pb, r : r + g], p[4 + pb, r : r + g]
                e0, e1, e2, e3, e4, e5 = _six(e, pb, 4)
                for f in range(g):
                    z = _bt6(d0[f], d1[f], d2[f], d3[f], d4[f], d5[f])
                    e0[f], e1[f], e2[f], e3[f], e4[f], e5[f] = z
            for k in range(6):  # ... then along the rows: columns 0-3 at f, 4-5 at f + 1
                c0, c1 = e[4 * k, :f_all], e[4 * k + 1, :f_all]
                c2, c3 = e[4 * k + 2, :f_all], e[4 * k + 3, :f_all]
                c4, c5 = e[4 * k, 1:], e[4 * k + 1, 1:]
                v0, v1, v2, v3, v4, v5 = _six_planes(v, 6 * k, 1, ci, t0, f_all)
                for f in range(f_all):
                    z = _bt6(c0[f], c1[f], c2[f], c3[f], c4[f], c5[f])
                    v0[f], v1[f], v2[f], v3[f], v4[f], v5[f] = z
                for ty in range(th):  # the unused tile of each row
                    q = ty * r + tw
                    v0[q] = v1[q] = v2[q] = v3[q] = v4[q] = v5[q] = 0


@njit(cache=True, nogil=True)
def _input_adj(dv, ph, pw, th, tw, dx):
    n, c = dx.shape[:2]
    r = tw + 1
    f_all = th * r
    g = f_all + 1
    size = (th + 1) * r + 1
    # q holds one pass's B-products with zeros around them, so that the shifted adds
    # (columns 4-5 -> phases 0-1 at f - 1, rows 4-5 -> phases 0-1 at f - R) are plain loops
    q = np.zeros((6, r + size), dv.dtype)
    de = np.empty((24, g), dv.dtype)  # de[4*row + column phase]
    dp = np.zeros((16, size), dv.dtype)
    for b in range(n):
        t0 = b * f_all
        for ci in range(c):
            q[:, :] = 0
            q0, q1, q2 = q[0, 1:g], q[1, 1:g], q[2, 1:g]
            q3, q4, q5 = q[3, 1:g], q[4, 1:g], q[5, 1:g]
            for k in range(6):  # the adjoint of the row pass
                v0, v1, v2, v3, v4, v5 = _six_planes(dv, 6 * k, 1, ci, t0, f_all)
                for f in range(f_all):
                    z = _b6(v0[f], v1[f], v2[f], v3[f], v4[f], v5[f])
                    q0[f], q1[f], q2[f], q3[f], q4[f], q5[f] = z
                _shift_add(q, 1, g, de[4 * k], de[4 * k + 1], de[4 * k + 2], de[4 * k + 3])
            q[:, :] = 0
            q0, q1, q2 = q[0, r : r + g], q[1, r : r + g], q[2, r : r + g]
            q3, q4, q5 = q[3, r : r + g], q[4, r : r + g], q[5, r : r + g]
            for pb in range(4):  # the adjoint of the column pass, shifted by R
                e0, e1, e2, e3, e4, e5 = _six(de, pb, 4)
                for f in range(g):
                    z = _b6(e0[f], e1[f], e2[f], e3[f], e4[f], e5[f])
                    q0[f], q1[f], q2[f], q3[f], q4[f], q5[f] = z
                _shift_add(q, r, size, dp[pb], dp[4 + pb], dp[8 + pb], dp[12 + pb])
            _from_phases(dp, ph, pw, r, dx[b, ci])


@njit(cache=True, nogil=True)
def _shift_add(q, s, count, o0, o1, o2, o3):
    """``o_i[f] = q[i, s + f] + q[i + 4, f]`` for ``i < 2``, ``q[i, s + f]`` for ``i >= 2``:
    ``B``'s outputs 4 and 5 land on phases 0 and 1 one step (``s``) further on. (Rows, not a
    strided 2-D view: the loop vectorizes on unit-stride rows only.)"""
    a0, a1, a2, a3 = (
        q[0, s : s + count],
        q[1, s : s + count],
        q[2, s : s + count],
        q[3, s : s + count],
    )
    b0, b1 = q[4, :count], q[5, :count]
    for f in range(count):
        o0[f] = a0[f] + b0[f]
        o1[f] = a1[f] + b1[f]
        o2[f] = a2[f]
        o3[f] = a3[f]


@njit(cache=True, nogil=True)
def _output_tf(m, th, tw, bias, has_bias, y):
    n, cout = y.shape[:2]
    r = tw + 1
    f_all = th * r
    p = np.empty((16, (th + 1) * r + 1), m.dtype)  # the output's phases
    s = np.empty((24, f_all), m.dtype)  # A^T down the columns: s[6*row + column]
    for b in range(n):
        t0 = b * f_all
        for co in range(cout):
            bb = bias[co if has_bias else 0]  # bias is [0] then: an int 0 would promote to float64
            for j in range(6):
                m0, m1, m2, m3, m4, m5 = _six_planes(m, j, 6, co, t0, f_all)
                s0, s1, s2, s3 = s[j], s[6 + j], s[12 + j], s[18 + j]
                for f in range(f_all):
                    s0[f], s1[f], s2[f], s3[f] = _at6(m0[f], m1[f], m2[f], m3[f], m4[f], m5[f])
            for i in range(4):
                a0, a1, a2, a3, a4, a5 = _six(s, 6 * i, 1)
                y0, y1 = p[4 * i, :f_all], p[4 * i + 1, :f_all]
                y2, y3 = p[4 * i + 2, :f_all], p[4 * i + 3, :f_all]
                for f in range(f_all):
                    z = _at6(a0[f], a1[f], a2[f], a3[f], a4[f], a5[f])
                    y0[f], y1[f], y2[f], y3[f] = z[0] + bb, z[1] + bb, z[2] + bb, z[3] + bb
            _from_phases(p, 0, 0, r, y[b, co])


@njit(cache=True, nogil=True)
def _output_adj(dy, th, tw, dm):
    n, cout = dy.shape[:2]
    r = tw + 1
    f_all = th * r
    p = np.zeros((16, (th + 1) * r + 1), dy.dtype)  # dY's phases; padding stays zero
    s = np.empty((24, f_all), dy.dtype)  # A along the rows: s[6*row + column]
    for b in range(n):
        t0 = b * f_all
        for co in range(cout):
            _to_phases(dy[b, co], 0, 0, r, p)
            for i in range(4):
                g0, g1 = p[4 * i, :f_all], p[4 * i + 1, :f_all]
                g2, g3 = p[4 * i + 2, :f_all], p[4 * i + 3, :f_all]
                s0, s1, s2, s3, s4, s5 = _six(s, 6 * i, 1)
                for f in range(f_all):
                    s0[f], s1[f], s2[f], s3[f], s4[f], s5[f] = _a6(g0[f], g1[f], g2[f], g3[f])
            for j in range(6):
                a0, a1, a2, a3 = s[j], s[6 + j], s[12 + j], s[18 + j]
                d0, d1, d2, d3, d4, d5 = _six_planes(dm, j, 6, co, t0, f_all)
                for f in range(f_all):
                    z = _a6(a0[f], a1[f], a2[f], a3[f])
                    d0[f], d1[f], d2[f], d3[f], d4[f], d5[f] = z


input_transform, input_transform_adjoint, output_transform, output_transform_adjoint = wrappers(
    4, _input_tf, _input_adj, _output_tf, _output_adj
)
