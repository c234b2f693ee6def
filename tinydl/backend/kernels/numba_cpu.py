"""Numba kernels: the ``numpy_ref`` signatures, compiled loops instead of strided copies.

Same layouts and results as ``numpy_ref`` (the tests compare them on hypothesis-generated
shapes, strides, paddings and dilations). Each public function checks the geometry with the
reference's ``_geometry``, makes its input C-contiguous and hands flat arrays and plain ints to
a compiled loop.

Why serial (no ``parallel=True``): on a 2-core machine Numba's worker threads and OpenBLAS's
(which spin for a while after every matrix product) fought for the cores; with parallel
kernels the GEMMs of a conv layer ran 2-3x slower. Serial kernels run on the calling thread
beside BLAS's pool and never compete with it; these loops are memory-bound, so a second thread
bought them only ~20% (measured in ``benchmarks/kernels.py``'s notes).

Why flat ``uint64`` indices: a signed index makes Numba test for negative wrap-around on every
access, which blocks vectorisation; the flat loops ran 2x faster than 4-D indexing.
``fastmath`` is off: it would let the compiler drop the NaN checks of max pooling.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from ..threads import get_num_threads, parallel, split
from .geometry import pair
from .numpy_ref import OPS, _geometry

__all__ = list(OPS)

# below this many elements a kernel stays on the calling thread: a share's hand-off costs more
_PARALLEL_MIN = 1 << 16


def _ranges(count: int, size: int):
    """``(start, stop)`` ranges of ``count`` planes or channels, one per worker thread (see
    ``tinydl.backend.threads``); one range for arrays of fewer than ``_PARALLEL_MIN``."""
    return split(count, get_num_threads() if size >= _PARALLEL_MIN else 1)


@njit(cache=True, nogil=True)
def _im2col(xf, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cf, rs, bs):
    # column row `row`, image `b`, output row `y` starts at row*rs + b*bs + y*ow: rs = N*OH*OW,
    # bs = OH*OW here; numba_conv_images passes its per-image layout's strides
    for row in range(c * kh * kw):
        ci, i, j = row // (kh * kw), row // kw % kh, row % kw
        w0 = j * dw - pw  # input column of output column 0 at kernel column j
        lo = min(max(0, (-w0 + sw - 1) // sw), ow)  # output columns [lo, hi) read inside [0, w)
        hi = max(min(ow, (w - 1 - w0) // sw + 1), lo)
        for b in range(n):
            for y in range(oh):
                dst = uint64(row * rs + b * bs + y * ow)
                ih = y * sh + i * dh - ph
                if ih < 0 or ih >= h:
                    for xo in range(ow):
                        cf[dst + uint64(xo)] = 0
                    continue
                src = uint64(((b * c + ci) * h + ih) * w + w0 + lo * sw)  # input of column lo
                for xo in range(lo):
                    cf[dst + uint64(xo)] = 0
                for t in range(hi - lo):
                    cf[dst + uint64(lo + t)] = xf[src + uint64(t * sw)]
                for xo in range(hi, ow):
                    cf[dst + uint64(xo)] = 0


def im2col(x, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """``x`` ``(N, C, H, W)`` -> ``cols`` ``(C*KH*KW, N*OH*OW)``; see ``numpy_ref.im2col``."""
    n, c, h, w = x.shape
    oh, ow, (sh, sw), (ph, pw), (dh, dw) = _geometry(x.shape, kh, kw, stride, padding, dilation)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    xf = np.ascontiguousarray(x).reshape(-1)
    m = n * oh * ow
    _im2col(xf, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cols.reshape(-1), m, oh * ow)
    return cols


@njit(cache=True, nogil=True)
def _col2im(cf, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, xf, rs, bs):
    for row in range(c * kh * kw):
        ci, i, j = row // (kh * kw), row // kw % kh, row % kw
        w0 = j * dw - pw
        lo = min(max(0, (-w0 + sw - 1) // sw), ow)
        hi = max(min(ow, (w - 1 - w0) // sw + 1), lo)
        for b in range(n):
            for y in range(oh):
                ih = y * sh + i * dh - ph
                if ih < 0 or ih >= h:
                    continue
                src = uint64(row * rs + b * bs + y * ow + lo)
                dst = uint64(((b * c + ci) * h + ih) * w + w0 + lo * sw)
                for t in range(hi - lo):
                    xf[dst + uint64(t * sw)] += cf[src + uint64(t)]


def col2im(cols, x_shape, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col``; see ``numpy_ref.col2im``."""
    n, c, h, w = x_shape
    oh, ow, (sh, sw), (ph, pw), (dh, dw) = _geometry(x_shape, kh, kw, stride, padding, dilation)
    out = np.zeros((n, c, h, w), dtype=cols.dtype)
    cf = np.ascontiguousarray(cols).reshape(-1)
    m = n * oh * ow
    _col2im(cf, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, out.reshape(-1), m, oh * ow)
    return out


@njit(cache=True, nogil=True)
def _first_nan(xf, p, h, w, kw, h0, w0, i_lo, i_hi, j_lo, j_hi):
    for i in range(i_lo, i_hi):
        for j in range(j_lo, j_hi):
            v = xf[uint64((p * h + h0 + i) * w + w0 + j)]
            if v != v:
                return v, i * kw + j
    return np.nan, 0


@njit(cache=True, nogil=True)
def _maxpool_fwd(xf, p0, p1, h, w, kh, kw, sh, sw, ph, pw, oh, ow, out, argmax):
    for p in range(p0, p1):
        for y in range(oh):
            h0 = y * sh - ph
            i_lo, i_hi = max(0, -h0), min(kh, h - h0)  # window rows inside the input
            for xo in range(ow):
                w0 = xo * sw - pw
                j_lo, j_hi = max(0, -w0), min(kw, w - w0)
                # the padding is -inf, so "first maximum" = first real value above -inf, or 0.
                # Selects rather than branches (random data mispredicts them: 9x slower).
                best = -np.inf
                at = 0
                nan = False
                for i in range(i_lo, i_hi):
                    row = uint64((p * h + h0 + i) * w + w0 + j_lo)
                    for j in range(j_lo, j_hi):
                        v = xf[row + uint64(j - j_lo)]
                        gt = v > best
                        best = v if gt else best
                        at = i * kw + j if gt else at
                        nan |= v != v
                if nan:  # rare: the first NaN wins, as in np.argmax
                    best, at = _first_nan(xf, p, h, w, kw, h0, w0, i_lo, i_hi, j_lo, j_hi)
                o = uint64((p * oh + y) * ow + xo)
                out[o] = best
                argmax[o] = at


@njit(cache=True, nogil=True)
def _maxpool_fwd_2x2(xf, p0, p1, h, w, oh, ow, out, argmax):
    """The common case (2x2 windows, stride 2, no padding), unrolled: measured 5-10x faster than
    the general loop. Same rule: the first maximum, and the first NaN wins."""
    for p in range(p0, p1):
        for y in range(oh):
            r0 = uint64((p * h + 2 * y) * w)
            r1 = r0 + uint64(w)
            o = uint64((p * oh + y) * ow)
            for xo in range(ow):
                c = uint64(2 * xo)
                v0, v1, v2, v3 = xf[r0 + c], xf[r0 + c + 1], xf[r1 + c], xf[r1 + c + 1]
                best, at = v0, 0  # a NaN v0 stays: no comparison with it is true
                if v1 > best:
                    best, at = v1, 1
                if v2 > best:
                    best, at = v2, 2
                if v3 > best:
                    best, at = v3, 3
                if best == best and (v1 != v1 or v2 != v2 or v3 != v3):
                    best, at = np.nan, 1 if v1 != v1 else (2 if v2 != v2 else 3)
                out[o + uint64(xo)] = best
                argmax[o + uint64(xo)] = at


def maxpool2d_forward(x, kernel, stride, padding=0):
    """Max pooling with argmax; see ``numpy_ref.maxpool2d_forward``. Floating-point inputs
    (integer ones go to the reference)."""
    if x.dtype.kind != "f":
        from .numpy_ref import maxpool2d_forward as reference

        return reference(x, kernel, stride, padding)
    kh, kw = pair(kernel, "maxpool2d", "kernel")
    n, c, h, w = x.shape
    oh, ow, (sh, sw), (ph, pw), _ = _geometry(x.shape, kh, kw, stride, padding, 1)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    xf = np.ascontiguousarray(x).reshape(-1)
    of, af = out.reshape(-1), argmax.reshape(-1)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        parallel(lambda r: _maxpool_fwd_2x2(xf, *r, h, w, oh, ow, of, af), _ranges(n * c, x.size))
    else:
        geometry = (h, w, kh, kw, sh, sw, ph, pw, oh, ow, of, af)
        parallel(lambda r: _maxpool_fwd(xf, *r, *geometry), _ranges(n * c, x.size))
    return out, argmax


@njit(cache=True, nogil=True)
def _maxpool_bwd(gf, af, p0, p1, h, w, kw, sh, sw, ph, pw, oh, ow, dxf):
    for p in range(p0, p1):
        for y in range(oh):
            for xo in range(ow):
                o = uint64((p * oh + y) * ow + xo)
                k = af[o]
                ih, iw = y * sh + k // kw - ph, xo * sw + k % kw - pw
                if 0 <= ih < h and 0 <= iw < w:  # a maximum in the padding gets no gradient
                    dxf[uint64((p * h + ih) * w + iw)] += gf[o]


@njit(cache=True, nogil=True)
def _maxpool_bwd_2x2(gf, af, p0, p1, h, w, oh, ow, dxf):
    """The common case (2x2 windows, stride 2, no padding): every maximum is inside its window
    and the offset splits with shifts, not the general loop's divisions by ``kw`` and bounds
    tests (measured with the zero fill: 2.1-2.2 against 3.8-4.0 ms at 128x32x28x28, one thread)."""
    for p in range(p0, p1):
        for y in range(oh):
            r0 = (p * h + 2 * y) * w
            o = (p * oh + y) * ow
            for xo in range(ow):
                k = af[o + xo]
                dxf[r0 + (k >> 1) * w + 2 * xo + (k & 1)] = gf[o + xo]


def maxpool2d_backward(grad, argmax, x_shape, kernel, stride, padding=0):
    """Gradient of max pooling; see ``numpy_ref.maxpool2d_backward``."""
    kh, kw = pair(kernel, "maxpool2d", "kernel")
    n, c, h, w = x_shape
    oh, ow, (sh, sw), (ph, pw), _ = _geometry(x_shape, kh, kw, stride, padding, 1)
    dx = np.zeros((n, c, h, w), dtype=grad.dtype)
    gf = np.ascontiguousarray(grad).reshape(-1)
    af = np.ascontiguousarray(argmax, dtype=np.int64).reshape(-1)
    dxf = dx.reshape(-1)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        geometry = (h, w, oh, ow, dxf)
        parallel(lambda r: _maxpool_bwd_2x2(gf, af, *r, *geometry), _ranges(n * c, dx.size))
        return dx
    geometry = (h, w, kw, sh, sw, ph, pw, oh, ow, dxf)
    parallel(lambda r: _maxpool_bwd(gf, af, *r, *geometry), _ranges(n * c, dx.size))
    return dx


# NOTE: "reassoc" lets LLVM vectorize the per-channel sums (several partial accumulators):
# without it each sum is one serial chain of float64 adds, about 5 GB/s where the memory gives
# 25-30. It changes only the order of the (float64) additions; no flag that drops NaN or inf.
# The element loops read their per-channel constants back from arrays of the input's dtype
# (``_in_dtype``), so they run in float32 for float32 data: 8 lanes, not 4 float64 ones.
_FAST = {"reassoc"}


@njit(cache=True, nogil=True)
def _in_dtype(buf, ci, a, b):
    """``a`` and ``b`` rounded to ``buf``'s dtype (``buf`` (C, 2) scratch)."""
    buf[ci, 0], buf[ci, 1] = a, b
    return buf[ci, 0], buf[ci, 1]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _bn_stats(x3, ci):
    """Mean and biased variance of channel ``ci`` of ``x3`` ``(N, C, S)``, two passes."""
    n, _, s = x3.shape
    acc = 0.0  # float64 accumulators: a float32 batch sums without drift
    for b in range(n):
        for k in range(s):
            acc += x3[b, ci, k]
    mu = acc / (n * s)
    acc = 0.0
    for b in range(n):
        for k in range(s):
            d = x3[b, ci, k] - mu
            acc += d * d
    return mu, acc / (n * s)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _bn_forward(x3, weight, bias, eps, y3, h3, mean, var, buf, c0, c1):
    n, c, s = x3.shape
    for ci in range(c0, c1):
        mu, v = _bn_stats(x3, ci)
        mean[ci], var[ci] = mu, v
        mu, inv = _in_dtype(buf, ci, mu, 1.0 / np.sqrt(v + eps))
        w, bb = weight[ci], bias[ci]
        for b in range(n):
            for k in range(s):
                hk = (x3[b, ci, k] - mu) * inv
                h3[b, ci, k] = hk
                y3[b, ci, k] = hk * w + bb


@njit(cache=True, nogil=True, fastmath=_FAST)
def _bn_relu_forward(x3, r3, add, weight, bias, eps, y3, mean, var, buf, c0, c1):
    # with ``add``, ``r3`` (x3's shape) is added before the ReLU (a residual block's shortcut)
    n, c, s = x3.shape
    zero = x3.dtype.type(0)
    for ci in range(c0, c1):
        mu, v = _bn_stats(x3, ci)
        mean[ci], var[ci] = mu, v
        mu, inv = _in_dtype(buf, ci, mu, 1.0 / np.sqrt(v + eps))
        w, bb = weight[ci], bias[ci]
        for b in range(n):
            for k in range(s):
                yk = (x3[b, ci, k] - mu) * inv * w + bb
                if add:  # loop-invariant: LLVM compiles the loop once for each value
                    yk += r3[b, ci, k]
                y3[b, ci, k] = yk if not yk <= 0 else zero  # NaN stays NaN, as np.maximum


def _affine_args(x, weight, bias):
    """``x`` as ``(N, C, S)`` and the ``(C,)`` weight and bias (ones and zeros for None)."""
    c = x.shape[1]
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], c, -1)
    w = np.ones(c, x.dtype) if weight is None else np.ascontiguousarray(weight, dtype=x.dtype)
    b = np.zeros(c, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    return x3, w, b, np.empty(c, x.dtype), np.empty(c, x.dtype), np.empty((c, 2), x.dtype)


def batchnorm_forward(x, weight, bias, eps):
    """Training-mode batch normalization; see ``numpy_ref.batchnorm_forward``."""
    x3, w, b, mean, var, buf = _affine_args(x, weight, bias)
    y, xhat, eps = np.empty_like(x3), np.empty_like(x3), float(eps)
    parallel(
        lambda r: _bn_forward(x3, w, b, eps, y, xhat, mean, var, buf, *r),
        _ranges(x3.shape[1], y.size),
    )
    return y.reshape(x.shape), xhat.reshape(x.shape), mean, var


def batchnorm_relu_forward(x, weight, bias, eps):
    """Training-mode batch normalization then ReLU; see ``numpy_ref.batchnorm_relu_forward``."""
    return _bn_relu_forward_call(x, None, weight, bias, eps)


def batchnorm_add_relu_forward(x, residual, weight, bias, eps):
    """Batch normalization, plus ``residual``, then ReLU; see
    ``numpy_ref.batchnorm_add_relu_forward``."""
    return _bn_relu_forward_call(x, residual, weight, bias, eps)


def _bn_relu_forward_call(x, residual, weight, bias, eps):
    x3, w, b, mean, var, buf = _affine_args(x, weight, bias)
    y, eps = np.empty_like(x3), float(eps)
    add = residual is not None
    r3 = np.ascontiguousarray(residual, dtype=x.dtype).reshape(x3.shape) if add else x3
    parallel(
        lambda r: _bn_relu_forward(x3, r3, add, w, b, eps, y, mean, var, buf, *r),
        _ranges(x3.shape[1], y.size),
    )
    return y.reshape(x.shape), mean, var


@njit(cache=True, nogil=True, fastmath=_FAST)
def _bn_backward(g3, h3, scale, dx3, dweight, dbias, buf, c0, c1):
    n, c, s = g3.shape
    m = n * s
    for ci in range(c0, c1):
        sg = 0.0
        sgh = 0.0
        for b in range(n):
            for k in range(s):
                g = g3[b, ci, k]
                sg += g
                sgh += g * h3[b, ci, k]
        dweight[ci], dbias[ci] = sgh, sg
        a, q = _in_dtype(buf, ci, sg / m, sgh / m)
        sc = scale[ci]
        for b in range(n):
            for k in range(s):
                dx3[b, ci, k] = sc * (g3[b, ci, k] - a - h3[b, ci, k] * q)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _bn_relu_backward(g3, x3, y3, mean, inv_std, scale, dx3, dweight, dbias, buf, c0, c1,
                      keep, gm3):
    # xhat is recomputed from x (saved anyway as the layer's input) instead of stored; with
    # ``keep`` the masked gradient also goes to ``gm3`` (the gradient of an added residual)
    n, c, s = g3.shape
    m = n * s
    zero, one = g3.dtype.type(0), g3.dtype.type(1)
    for ci in range(c0, c1):
        sg = 0.0
        sgh = 0.0
        mu, inv = mean[ci], inv_std[ci]
        for b in range(n):
            for k in range(s):
                # g * mask, not a select: a NaN or inf gradient under a 0 output gives NaN,
                # as ReLU's backward (a multiply by the mask) does
                g = g3[b, ci, k] * (zero if y3[b, ci, k] <= 0 else one)
                sg += g
                sgh += g * ((x3[b, ci, k] - mu) * inv)
        dweight[ci], dbias[ci] = sgh, sg
        a, q = _in_dtype(buf, ci, sg / m, sgh / m)
        sc = scale[ci]
        for b in range(n):
            for k in range(s):
                g = g3[b, ci, k] * (zero if y3[b, ci, k] <= 0 else one)
                dx3[b, ci, k] = sc * (g - a - ((x3[b, ci, k] - mu) * inv) * q)
                if keep:  # loop-invariant, as ``add`` in the forward
                    gm3[b, ci, k] = g


def _backward_args(grad, weight, inv_std):
    n, c = grad.shape[:2]
    g3 = np.ascontiguousarray(grad).reshape(n, c, -1)
    scale = inv_std if weight is None else weight * inv_std
    scale = np.ascontiguousarray(scale, dtype=grad.dtype)
    dweight, dbias, buf = np.empty(c, g3.dtype), np.empty(c, g3.dtype), np.empty((c, 2), g3.dtype)
    return g3, scale, np.empty_like(g3), dweight, dbias, buf


def batchnorm_backward(grad, xhat, weight, inv_std):
    """Gradients of batch normalization; see ``numpy_ref.batchnorm_backward``."""
    g3, scale, dx, dweight, dbias, buf = _backward_args(grad, weight, inv_std)
    h3 = np.ascontiguousarray(xhat, dtype=grad.dtype).reshape(g3.shape)
    parallel(
        lambda r: _bn_backward(g3, h3, scale, dx, dweight, dbias, buf, *r),
        _ranges(g3.shape[1], dx.size),
    )
    return dx.reshape(grad.shape), dweight, dbias


def batchnorm_relu_backward(grad, x, y, weight, mean, inv_std):
    """Gradients of batch norm then ReLU; see ``numpy_ref.batchnorm_relu_backward``."""
    return _bn_relu_backward_call(grad, x, y, weight, mean, inv_std, False)


def batchnorm_add_relu_backward(grad, x, y, weight, mean, inv_std):
    """Gradients of batch norm plus a residual then ReLU; see
    ``numpy_ref.batchnorm_add_relu_backward``."""
    return _bn_relu_backward_call(grad, x, y, weight, mean, inv_std, True)


def _bn_relu_backward_call(grad, x, y, weight, mean, inv_std, keep):
    g3, scale, dx, dweight, dbias, buf = _backward_args(grad, weight, inv_std)
    x3 = np.ascontiguousarray(x, dtype=grad.dtype).reshape(g3.shape)
    y3 = np.ascontiguousarray(y, dtype=grad.dtype).reshape(g3.shape)
    mu = np.ascontiguousarray(mean, dtype=grad.dtype)
    inv = np.ascontiguousarray(inv_std, dtype=grad.dtype)
    gm = np.empty_like(g3) if keep else dx
    parallel(
        lambda r: _bn_relu_backward(g3, x3, y3, mu, inv, scale, dx, dweight, dbias, buf, *r,
                                    keep, gm),
        _ranges(g3.shape[1], dx.size),
    )
    out = (dx.reshape(grad.shape), dweight, dbias)
    return out + (gm.reshape(grad.shape),) if keep else out
