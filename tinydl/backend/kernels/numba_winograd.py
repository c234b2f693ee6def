"""Numba Winograd F(2x2, 3x3) transforms: ``winograd``'s signatures, one compiled loop each.

Same layouts and results as the NumPy reference ``tinydl.backend.kernels.winograd`` (the tests
compare them). Each image plane is first split into its four *phases* (even/odd rows x
even/odd columns of the zero-padded plane, ``TH + 1`` rows of ``TW + 1`` each, flat): tile
``(ty, tx)``'s 4x4 input is then the phases at flat offsets ``f``, ``f + 1``, ``f + R``,
``f + R + 1`` with ``f = ty*R + tx``, ``R = TW + 1``. So every transform is a few long
unit-stride loops over ``f`` that LLVM vectorizes, where a loop per tile row (7 or 14 tiles)
did not; the unused last tile of each row in ``V``/``M`` (see ``winograd``) is what makes
``f`` run over whole planes. Adds and subtracts only (``B`` and ``A`` hold 0 and +-1), in the
input's dtype. Serial (``nogil``): the convolution calls them from its worker threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .winograd import tiles, tiles_per_image, weight_transform, weight_transform_adjoint

__all__ = [
    "weight_transform",
    "weight_transform_adjoint",
    "input_transform",
    "input_transform_adjoint",
    "output_transform",
    "output_transform_adjoint",
]


# NOTE: every transform walks channels outside and images inside, so that consecutive planes
# fill (or read) consecutive stretches of each of the 16 rows ``V[xi, c]``/``M[xi, c]``; images
# outside scattered 224-byte pieces over 16*C rows. Input transform of 128x64x14x14 on two
# threads, 7 alternated rounds: 6.0 -> 4.4-4.8 ms (32 channels 3.3 -> 2.4), the output
# adjoint 4.1-4.5 -> 3.7; the per-piece output transform and input adjoint unchanged. (The same
# reordering slowed F(4x4) at 28x28 down, 6.2 -> 7.2 ms: ``numba_winograd4`` keeps images
# outside.)
# NOTE: the loops index plain ``f`` on views cut to the shifted ranges: an index like
# ``a[f + r]`` (signed) gets Numba's negative-index wrap-around, which kept LLVM from
# vectorizing (measured 0.6 against 0.06 ns per element). No int constant meets a float32
# value inside a loop (``s * g`` with an int ``s``, ``bias[0] * 0``): Numba computes that in
# float64, and the converting loop ran scalar (2 of the 4.4 ms of an output transform).


@njit(cache=True, nogil=True)
def _to_phases(plane, ph, pw, r, ph4):
    """``ph4[2*a + b, (i//2)*R + j//2] = plane[i - ph, j - pw]`` for the plane's pixels, with
    ``a = i % 2``, ``b = j % 2`` (padded coordinates). Other entries are left as they are: the
    callers' buffers start zeroed and only ever receive the same positions."""
    h, w = plane.shape
    half = w // 2  # column pairs (2k, 2k + 1): one loop of two unit-stride stores
    for i in range(h):
        ip = i + ph
        o, base = (ip // 2) * r, 2 * (ip % 2)
        row = plane[i]
        a = ph4[base + pw % 2, o + pw // 2 : o + pw // 2 + half]
        b = ph4[base + (pw + 1) % 2, o + (pw + 1) // 2 : o + (pw + 1) // 2 + half]
        for k in range(half):
            a[k] = row[2 * k]
            b[k] = row[2 * k + 1]
        if w % 2:
            jp = w - 1 + pw
            ph4[base + jp % 2, o + jp // 2] = row[w - 1]


@njit(cache=True, nogil=True)
def _from_phases(ph4, ph, pw, r, plane):
    """The inverse gather of ``_to_phases``: ``plane[i, j] = ph4[…]`` for every pixel."""
    h, w = plane.shape
    half = w // 2
    for i in range(h):
        ip = i + ph
        o, base = (ip // 2) * r, 2 * (ip % 2)
        row = plane[i]
        a = ph4[base + pw % 2, o + pw // 2 : o + pw // 2 + half]
        b = ph4[base + (pw + 1) % 2, o + (pw + 1) // 2 : o + (pw + 1) // 2 + half]
        for k in range(half):
            row[2 * k] = a[k]
            row[2 * k + 1] = b[k]
        if w % 2:
            jp = w - 1 + pw
            row[w - 1] = ph4[base + jp % 2, o + jp // 2]


@njit(cache=True, nogil=True)
def _input_tf(x, ph, pw, th, tw, v):
    n, c = x.shape[:2]
    r = tw + 1
    f_all = th * r
    p4 = np.zeros((4, (th + 1) * r + 1), x.dtype)
    e = np.empty((8, f_all + 1), x.dtype)  # B^T applied down the columns: e[2*i + parity]
    for ci in range(c):
        for b in range(n):
            _to_phases(x[b, ci], ph, pw, r, p4)
            for pb in range(2):  # rows (0, 1, 2, 3) = phases (even f, odd f, even f+R, odd f+R)
                p0, p1 = p4[pb, : f_all + 1], p4[2 + pb, : f_all + 1]
                p2, p3 = p4[pb, r : r + f_all + 1], p4[2 + pb, r : r + f_all + 1]
                e0, e1, e2, e3 = e[pb], e[2 + pb], e[4 + pb], e[6 + pb]
                for f in range(f_all + 1):
                    a0, a1, a2, a3 = p0[f], p1[f], p2[f], p3[f]
                    e0[f] = a0 - a2
                    e1[f] = a1 + a2
                    e2[f] = a2 - a1
                    e3[f] = a1 - a3
            t0 = b * f_all
            for i in range(4):  # ... then along the rows: columns (E f, O f, E f+1, O f+1)
                ee, eo = e[2 * i, :f_all], e[2 * i + 1, :f_all]
                ee1, eo1 = e[2 * i, 1:], e[2 * i + 1, 1:]
                v0, v1 = v[4 * i, ci, t0 : t0 + f_all], v[4 * i + 1, ci, t0 : t0 + f_all]
                v2, v3 = v[4 * i + 2, ci, t0 : t0 + f_all], v[4 * i + 3, ci, t0 : t0 + f_all]
                for f in range(f_all):
                    a0, a1, a2, a3 = ee[f], eo[f], ee1[f], eo1[f]
                    v0[f] = a0 - a2
                    v1[f] = a1 + a2
                    v2[f] = a2 - a1
                    v3[f] = a1 - a3
                for ty in range(th):  # the unused tile of each row
                    q = ty * r + tw
                    v0[q] = v1[q] = v2[q] = v3[q] = 0


@njit(cache=True, nogil=True, inline="always")
def _row_adj(a0, a1, a2, a3, b0, b1, b2, b3, even, odd):
    """``even = a0 - b0 + b1 + b2``, ``odd = a1 - a2 + a3 - b3`` over ``even``'s length: the
    gathered adjoint of one pass, ``a`` at ``f`` and ``b`` one step (or row) back."""
    for f in range(len(even)):
        even[f] = a0[f] - b0[f] + b1[f] + b2[f]
        odd[f] = a1[f] - a2[f] + a3[f] - b3[f]


@njit(cache=True, nogil=True)
def _input_adj(dv, ph, pw, th, tw, dx):
    n, c = dx.shape[:2]
    r = tw + 1
    f_all = th * r
    size = (th + 1) * r + 1
    de = np.zeros((8, f_all + 1), dv.dtype)
    dp = np.zeros((4, size), dv.dtype)
    for ci in range(c):
        for b in range(n):
            t0 = b * f_all
            for i in range(4):  # the adjoint of the row pass, gathered: no scattered adds
                ee, eo = de[2 * i], de[2 * i + 1]
                v0, v1 = dv[4 * i, ci, t0 : t0 + f_all], dv[4 * i + 1, ci, t0 : t0 + f_all]
                v2, v3 = dv[4 * i + 2, ci, t0 : t0 + f_all], dv[4 * i + 3, ci, t0 : t0 + f_all]
                ee[0], eo[0] = v0[0], v1[0] - v2[0] + v3[0]
                _row_adj(v0[1:], v1[1:], v2[1:], v3[1:], v0, v1, v2, v3, ee[1:f_all], eo[1:f_all])
                g = f_all - 1
                ee[f_all], eo[f_all] = v1[g] + v2[g] - v0[g], -v3[g]
            for pb in range(2):  # the adjoint of the column pass, shifted by R
                e0, e1, e2, e3 = de[pb], de[2 + pb], de[4 + pb], de[6 + pb]
                p0, p1 = dp[pb], dp[2 + pb]
                for f in range(min(r, f_all + 1)):
                    p0[f] = e0[f]
                    p1[f] = e1[f] - e2[f] + e3[f]
                _row_adj(e0[r:], e1[r:], e2[r:], e3[r:], e0, e1, e2, e3, p0[r : f_all + 1],
                         p1[r : f_all + 1])  # fmt: skip
                for f in range(f_all + 1, f_all + 1 + r):
                    p0[f] = e1[f - r] + e2[f - r] - e0[f - r]
                    p1[f] = -e3[f - r]
            _from_phases(dp, ph, pw, r, dx[b, ci])


@njit(cache=True, nogil=True)
def _output_tf(m, th, tw, bias, has_bias, y):
    n, cout = y.shape[:2]
    r = tw + 1
    f_all = th * r
    p4 = np.empty((4, (th + 1) * r + 1), m.dtype)  # the output's phases
    sd = np.empty((8, f_all), m.dtype)
    for co in range(cout):
        bb = bias[co if has_bias else 0]  # bias is [0] then: an int 0 would promote to float64
        for b in range(n):
            t0 = b * f_all
            y00, y01, y10, y11 = p4[0, :f_all], p4[1, :f_all], p4[2, :f_all], p4[3, :f_all]
            for j in range(4):  # A^T down the columns: s[j] = rows 0 + 1 + 2, d[j] = 1 - 2 - 3
                m0, m1 = m[j, co, t0 : t0 + f_all], m[4 + j, co, t0 : t0 + f_all]
                m2, m3 = m[8 + j, co, t0 : t0 + f_all], m[12 + j, co, t0 : t0 + f_all]
                sj, dj = sd[j], sd[4 + j]
                for f in range(f_all):
                    sj[f] = m0[f] + m1[f] + m2[f]
                    dj[f] = m1[f] - m2[f] - m3[f]
            s0, s1, s2, s3 = sd[0], sd[1], sd[2], sd[3]
            d0, d1, d2, d3 = sd[4], sd[5], sd[6], sd[7]
            for f in range(f_all):  # ... then along the rows, plus the bias
                y00[f] = s0[f] + s1[f] + s2[f] + bb
                y01[f] = s1[f] - s2[f] - s3[f] + bb
            for f in range(f_all):
                y10[f] = d0[f] + d1[f] + d2[f] + bb
                y11[f] = d1[f] - d2[f] - d3[f] + bb
            _from_phases(p4, 0, 0, r, y[b, co])


@njit(cache=True, nogil=True)
def _output_adj(dy, th, tw, dm):
    n, cout = dy.shape[:2]
    r = tw + 1
    f_all = th * r
    p4 = np.zeros((4, (th + 1) * r + 1), dy.dtype)  # dY's phases; padding stays zero
    q = np.empty((6, f_all), dy.dtype)
    for co in range(cout):
        for b in range(n):
            t0 = b * f_all
            _to_phases(dy[b, co], 0, 0, r, p4)
            g00, g01, g10, g11 = p4[0, :f_all], p4[1, :f_all], p4[2, :f_all], p4[3, :f_all]
            # q = A dY has the rows (g0, g0 + g1, g0 - g1, -g1); dM = q A^T, a row of q at a time
            q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
            for f in range(f_all):
                q0[f] = g00[f] + g10[f]
                q1[f] = g00[f] - g10[f]
                q2[f] = g01[f] + g11[f]
                q3[f] = g01[f] - g11[f]
            q4, q5 = q[4], q[5]
            for f in range(f_all):
                q4[f] = -g10[f]
                q5[f] = -g11[f]
            rows = ((g00, g01), (q0, q2), (q1, q3), (q4, q5))  # (a, c) of q's row i
            for i in range(4):
                a, c = rows[i]
                d0, d1 = dm[4 * i, co, t0 : t0 + f_all], dm[4 * i + 1, co, t0 : t0 + f_all]
                d2, d3 = dm[4 * i + 2, co, t0 : t0 + f_all], dm[4 * i + 3, co, t0 : t0 + f_all]
                for f in range(f_all):
                    d0[f] = a[f]
                    d1[f] = a[f] + c[f]
                    d2[f] = a[f] - c[f]
                    d3[f] = -c[f]


def _expect(op, what, array, shape):
    """The compiled loops do not check bounds: a wrong shape must stop here, not write past."""
    if array.shape != tuple(shape):
        raise ValueError(f"winograd {op}: {what} must have shape {tuple(shape)}, got {array.shape}")


def wrappers(tile, input_tf, input_adj, output_tf, output_adj):
    """The Python entry points of one tile size's compiled transforms, with ``winograd``'s
    signatures (``tile`` left out): ``(input_transform, input_transform_adjoint,
    output_transform, output_transform_adjoint)``."""
    a2 = (tile + 2) ** 2

    def input_transform(x, padding):
        """``x`` ``(N, C, H, W)`` -> ``V`` ``(a*a, C, N*TH*(TW + 1))``; see
        ``winograd.input_transform``."""
        n, c, h, w = x.shape
        _, _, th, tw = tiles(h, w, padding, tile)
        v = np.empty((a2, c, n * tiles_per_image(th, tw)), dtype=x.dtype)
        input_tf(np.ascontiguousarray(x), padding[0], padding[1], th, tw, v)
        return v

    def input_transform_adjoint(dv, x_shape, padding, out=None):
        """``dV`` -> ``dX`` of ``x_shape``; see ``winograd.input_transform_adjoint``. ``dV``'s
        unused tiles must be zero (as ``U^T @ dM`` makes them)."""
        n, c, h, w = x_shape
        _, _, th, tw = tiles(h, w, padding, tile)
        _expect("input_transform_adjoint", "dV", dv, (a2, c, n * tiles_per_image(th, tw)))
        dx = np.empty(x_shape, dtype=dv.dtype) if out is None else out
        _expect("input_transform_adjoint", "out", dx, x_shape)
        input_adj(np.ascontiguousarray(dv), padding[0], padding[1], th, tw, dx)
        return dx

    def output_transform(m, n, oh, ow, bias=None, out=None):
        """``M`` -> ``Y`` ``(N, C_out, OH, OW)`` plus ``bias``; see
        ``winograd.output_transform``. ``out``: any writable array of the output's shape."""
        cout = m.shape[1]
        th, tw = -(-oh // tile), -(-ow // tile)
        _expect("output_transform", "M", m, (a2, cout, n * tiles_per_image(th, tw)))
        y = np.empty((n, cout, oh, ow), dtype=m.dtype) if out is None else out
        _expect("output_transform", "out", y, (n, cout, oh, ow))
        b = np.zeros(1, m.dtype) if bias is None else np.ascontiguousarray(bias, dtype=m.dtype)
        if bias is not None:
            _expect("output_transform", "bias", b, (cout,))
        output_tf(m, -(-oh // tile), -(-ow // tile), b, bias is not None, y)
        return y

    def output_transform_adjoint(dy):
        """``dY`` -> ``dM`` ``(a*a, C_out, N*TH*(TW + 1))``; see
        ``winograd.output_transform_adjoint``."""
        n, cout, oh, ow = dy.shape
        th, tw = -(-oh // tile), -(-ow // tile)
        dm = np.empty((a2, cout, n * tiles_per_image(th, tw)), dtype=dy.dtype)
        output_adj(np.ascontiguousarray(dy), th, tw, dm)
        return dm

    return input_transform, input_transform_adjoint, output_transform, output_transform_adjoint


input_transform, input_transform_adjoint, output_transform, output_transform_adjoint = wrappers(
    2, _input_tf, _input_adj, _output_tf, _output_adj
)
