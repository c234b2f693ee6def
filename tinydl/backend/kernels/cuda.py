"""CUDA kernels: the ``OPS`` of ``numpy_ref`` for CuPy arrays, and fused optimizer updates.

Same signatures, layouts and results as the NumPy reference (read its docstrings). Each kernel
is a CuPy ``ElementwiseKernel`` with one thread per output element; the inputs are ``raw``
arrays that a thread indexes itself. No atomics: ``col2im`` and the max-pool backward gather,
for each input pixel, from the few windows that cover it, in the reference's order, so their
sums match it exactly. Matrix products are not here: CuPy's ``matmul`` calls cuBLAS.

The C++ bodies are plain data (``SPECS``), so the tests also compile and run them on the CPU
against the reference (``tests/gpu/cuda_harness.py``). The CuPy kernels are built on first
use; CuPy compiles them with NVRTC on the first call and caches the binaries on disk.
Optimizer and batch-norm kernels are compiled with ``--fmad=false``: without contracted
multiply-adds they round each step as NumPy does.

dtypes: float16, float32 and float64 (the batch-norm kernels compute float16 in float32;
the fused optimizer updates take float32 and float64); other dtypes run the reference, which
works on CuPy arrays too.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..cupy_backend import cupy_module
from . import numpy_ref
from .geometry import pair
from .numpy_ref import (  # noqa: F401 (generic)
    batchnorm_add_relu_backward,
    batchnorm_add_relu_forward,
    batchnorm_relu_backward,
    batchnorm_relu_forward,
)

__all__ = ["SPECS", *numpy_ref.OPS, "fused_sgd_update", "fused_adam_update"]


class Spec(NamedTuple):
    inputs: str
    outputs: str
    body: str
    options: tuple = ()


_WINDOW = "int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 OH, int32 OW, int32 SH, int32 SW"
_EXACT = ("--fmad=false",)
# sgd_update's d_p: the gradient, negated to maximize, plus weight decay
_SGD_GRAD = """
        T d = maximize ? T(-grad) : grad;
        if (decay) d = maximize ? T(param * weight_decay - grad) : T(param * weight_decay + grad);
"""

SPECS = {
    # cols[row, col]: row = (c*KH + ki)*KW + kj, col = (img*OH + oh)*OW + ow
    "im2col": Spec(
        f"raw T x, {_WINDOW}, int32 PH, int32 PW, int32 DH, int32 DW, int64 M",
        "T cols",
        """
        const ptrdiff_t idx = i;
        const ptrdiff_t col = idx % M, row = idx / M;
        const int kj = row % KW, ki = (row / KW) % KH, c = row / ((ptrdiff_t)KW * KH);
        const int ow = col % OW, oh = (col / OW) % OH;
        const ptrdiff_t img = col / ((ptrdiff_t)OW * OH);
        const int h = oh * SH - PH + ki * DH, w = ow * SW - PW + kj * DW;
        if (h >= 0 && h < H && w >= 0 && w < W) {
            cols = x[((img * C + c) * H + h) * W + w];
        } else {
            cols = T(0);
        }
        """,
    ),
    # x[img, c, h, w] = sum of the column entries copied from it, in (ki, kj) order
    "col2im": Spec(
        f"raw T cols, {_WINDOW}, int32 PH, int32 PW, int32 DH, int32 DW, int64 M",
        "T x",
        """
        const ptrdiff_t idx = i;
        const int w = idx % W, h = (idx / W) % H, c = (idx / ((ptrdiff_t)W * H)) % C;
        const ptrdiff_t img = idx / ((ptrdiff_t)W * H * C);
        T acc = T(0);
        for (int ki = 0; ki < KH; ++ki) {
            const int hp = h + PH - ki * DH;
            if (hp < 0 || hp % SH != 0 || hp / SH >= OH) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int wp = w + PW - kj * DW;
                if (wp < 0 || wp % SW != 0 || wp / SW >= OW) continue;
                const ptrdiff_t row = ((ptrdiff_t)c * KH + ki) * KW + kj;
                const ptrdiff_t col = (img * OH + hp / SH) * OW + wp / SW;
                acc = acc + cols[row * M + col];
            }
        }
        x = acc;
        """,
    ),
    # first maximum of the window wins; a NaN wins and stays (NumPy's argmax)
    "maxpool2d_forward": Spec(
        f"raw T x, {_WINDOW}, int32 PH, int32 PW, T lowest",
        "T out, int64 argmax",
        """
        const ptrdiff_t idx = i;
        const int ow = idx % OW, oh = (idx / OW) % OH;
        const ptrdiff_t plane = (idx / ((ptrdiff_t)OW * OH)) * H * W;
        T best_value = lowest;
        double best = 0.0;
        ptrdiff_t best_k = -1;
        for (int ki = 0; ki < KH; ++ki) {
            const int h = oh * SH - PH + ki;
            for (int kj = 0; kj < KW; ++kj) {
                const int w = ow * SW - PW + kj;
                const bool inside = h >= 0 && h < H && w >= 0 && w < W;
                const T value = inside ? T(x[plane + (ptrdiff_t)h * W + w]) : lowest;
                const double v = (double)value;
                if (best_k < 0 || (!isnan(best) && (isnan(v) || v > best))) {
                    best = v;
                    best_value = value;
                    best_k = ki * KW + kj;
                }
            }
        }
        out = best_value;
        argmax = best_k;
        """,
    ),
    # dx[img, c, h, w] = sum of grad over the windows whose argmax is this pixel
    "maxpool2d_backward": Spec(
        f"raw T grad, raw int64 argmax, {_WINDOW}, int32 PH, int32 PW",
        "T dx",
        """
        const ptrdiff_t idx = i;
        const int w = idx % W, h = (idx / W) % H;
        const ptrdiff_t plane = idx / ((ptrdiff_t)W * H);
        T acc = T(0);
        for (int ki = 0; ki < KH; ++ki) {
            const int hp = h + PH - ki;
            if (hp < 0 || hp % SH != 0 || hp / SH >= OH) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int wp = w + PW - kj;
                if (wp < 0 || wp % SW != 0 || wp / SW >= OW) continue;
                const ptrdiff_t o = (plane * OH + hp / SH) * OW + wp / SW;
                if (argmax[o] == ki * KW + kj) acc = acc + grad[o];
            }
        }
        dx = acc;
        """,
    ),
    # x (N, C, S) viewed flat; per-channel arrays indexed by c
    "batchnorm_forward": Spec(
        "T x, raw T mean, raw T inv_std, raw T weight, raw T bias, int32 C, int64 S, "
        "int32 has_weight, int32 has_bias",
        "T xhat, T y",
        """
        const int c = (i / S) % C;
        const T h = (x - mean[c]) * inv_std[c];
        xhat = h;
        const T scaled = has_weight ? T(h * weight[c]) : h;
        y = has_bias ? T(scaled + bias[c]) : scaled;
        """,
        _EXACT,
    ),
    "batchnorm_backward": Spec(
        "T g, T xhat, raw T mean_g, raw T mean_gx, raw T scale, int32 C, int64 S",
        "T dx",
        """
        const int c = (i / S) % C;
        const T centered = g - mean_g[c];
        dx = (centered - xhat * mean_gx[c]) * scale[c];
        """,
        _EXACT,
    ),
    # sgd_update without momentum: param += -lr * (+-grad + weight_decay * param)
    "sgd": Spec(
        "T grad, T neg_lr, T weight_decay, int32 maximize, int32 decay",
        "T param",
        _SGD_GRAD
        + """
        param = param + d * neg_lr;
        """,
        _EXACT,
    ),
    # sgd_update with momentum (first: the buffer starts as the gradient)
    "sgd_momentum": Spec(
        "T grad, T neg_lr, T weight_decay, T momentum, T one_minus_dampening, "
        "int32 maximize, int32 decay, int32 nesterov, int32 first",
        "T param, T buf",
        _SGD_GRAD
        + """
        T b;
        if (first) {
            b = d;
        } else {
            b = buf * momentum;
            b = b + d * one_minus_dampening;
        }
        buf = b;
        const T step = nesterov ? T(d + b * momentum) : b;
        param = param + step * neg_lr;
        """,
        _EXACT,
    ),
    # adam_update (decoupled: AdamW); lerp as PyTorch's lerp_, eps_divide's zero step
    "adam": Spec(
        "T grad, T neg_lr_bc1, T shrink, T weight_decay, T w1, T one_minus_w1, T beta2, "
        "T one_minus_beta2, T bc2_sqrt, T eps, int32 maximize, int32 decay, int32 decoupled, "
        "int32 lerp_high",
        "T param, T exp_avg, T exp_avg_sq",
        """
        T g = maximize ? T(-grad) : grad;
        if (decay) {
            if (decoupled) param = param * shrink;
            else g = g + param * weight_decay;
        }
        const T diff = g - exp_avg;
        exp_avg = lerp_high ? T(g - diff * one_minus_w1) : T(exp_avg + diff * w1);
        exp_avg_sq = exp_avg_sq * beta2 + (g * one_minus_beta2) * g;
        const T denom = sqrt(exp_avg_sq) / bc2_sqrt + eps;
        const T update = denom == T(0) ? T(0) : T(exp_avg / denom);
        param = param + update * neg_lr_bc1;
        """,
        _EXACT,
    ),
}
SPECS["adam_amsgrad"] = Spec(
    SPECS["adam"].inputs,
    SPECS["adam"].outputs + ", T max_exp_avg_sq",
    SPECS["adam"].body.replace(
        "const T denom = sqrt(exp_avg_sq)",
        "max_exp_avg_sq = (isnan(max_exp_avg_sq) || max_exp_avg_sq > exp_avg_sq)\n"
        "            ? T(max_exp_avg_sq) : T(exp_avg_sq);\n"
        "        const T denom = sqrt(max_exp_avg_sq)",
    ),
    _EXACT,
)


def _cupy():
    """The ``cupy`` module (through the backend, the one place that imports it)."""
    return cupy_module()


@functools.cache
def _kernel(name: str):
    spec = SPECS[name]
    return _cupy().ElementwiseKernel(
        spec.inputs, spec.outputs, spec.body, f"tinydl_{name}", options=spec.options
    )


def _float(*arrays) -> bool:
    return all(a is None or a.dtype.kind == "f" for a in arrays)


# ----------------------------------------------------------------------------- conv


def im2col(x, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """``x`` ``(N, C, H, W)`` -> ``cols`` ``(C*KH*KW, N*OH*OW)``, as ``numpy_ref.im2col``."""
    if not _float(x):
        return numpy_ref.im2col(x, kh, kw, stride, padding, dilation)
    xp = _cupy()
    n, c, h, w = x.shape
    oh, ow, stride, padding, dilation = numpy_ref._geometry(
        x.shape, kh, kw, stride, padding, dilation
    )
    cols = xp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    if cols.size:
        window = (c, h, w, kh, kw, oh, ow, *stride, *padding, *dilation, n * oh * ow)
        _kernel("im2col")(xp.ascontiguousarray(x), *window, cols)
    return cols


def col2im(cols, x_shape, kh: int, kw: int, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col``, as ``numpy_ref.col2im``."""
    if not _float(cols):
        return numpy_ref.col2im(cols, x_shape, kh, kw, stride, padding, dilation)
    xp = _cupy()
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow, stride, padding, dilation = numpy_ref._geometry(
        x_shape, kh, kw, stride, padding, dilation
    )
    x = xp.empty((n, c, h, w), dtype=cols.dtype)
    if x.size:
        window = (c, h, w, kh, kw, oh, ow, *stride, *padding, *dilation, n * oh * ow)
        _kernel("col2im")(xp.ascontiguousarray(cols), *window, x)
    return x


# ----------------------------------------------------------------------------- pooling


def maxpool2d_forward(x, kernel, stride, padding=0):
    """``(out, argmax)`` as ``numpy_ref.maxpool2d_forward``."""
    if not _float(x):
        return numpy_ref.maxpool2d_forward(x, kernel, stride, padding)
    xp = _cupy()
    n, c, h, w = x.shape
    kh, kw = pair(kernel, "maxpool2d", "kernel")
    oh, ow, stride, padding, _ = numpy_ref._geometry(x.shape, kh, kw, stride, padding, 1)
    out = xp.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = xp.empty((n, c, oh, ow), dtype=np.int64)
    if out.size:
        window = (c, h, w, kh, kw, oh, ow, *stride, *padding)
        _kernel("maxpool2d_forward")(xp.ascontiguousarray(x), *window, -np.inf, out, argmax)
    return out, argmax


def maxpool2d_backward(grad, argmax, x_shape, kernel, stride, padding=0):
    """``dx`` as ``numpy_ref.maxpool2d_backward``."""
    if not _float(grad):
        return numpy_ref.maxpool2d_backward(grad, argmax, x_shape, kernel, stride, padding)
    xp = _cupy()
    n, c, h, w = (int(s) for s in x_shape)
    kh, kw = pair(kernel, "maxpool2d", "kernel")
    oh, ow, stride, padding, _ = numpy_ref._geometry(x_shape, kh, kw, stride, padding, 1)
    dx = xp.empty((n, c, h, w), dtype=grad.dtype)
    if dx.size:
        window = (c, h, w, kh, kw, oh, ow, *stride, *padding)
        grad, argmax = xp.ascontiguousarray(grad), xp.ascontiguousarray(argmax, dtype=np.int64)
        _kernel("maxpool2d_backward")(grad, argmax, *window, dx)
    return dx


# ----------------------------------------------------------------------------- batch norm


def _compute_dtype(dtype):
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def batchnorm_forward(x, weight, bias, eps):
    """``(y, xhat, mean, var)`` as ``numpy_ref.batchnorm_forward``: the statistics by the
    reference's ``batchnorm_statistics`` (CuPy reductions), normalisation and affine in one
    kernel."""
    if not _float(x, weight, bias):
        return numpy_ref.batchnorm_forward(x, weight, bias, eps)
    xp = _cupy()
    dtype = x.dtype
    ct = _compute_dtype(dtype)
    x3 = xp.ascontiguousarray(x, dtype=ct).reshape(x.shape[0], x.shape[1], -1)
    c, s = x3.shape[1], x3.shape[2]
    mean, var, _ = numpy_ref.batchnorm_statistics(x3)
    mean, var = mean.reshape(-1), var.reshape(-1)
    inv_std = 1 / xp.sqrt(var + eps)
    w = mean if weight is None else xp.ascontiguousarray(weight, dtype=ct)
    b = mean if bias is None else xp.ascontiguousarray(bias, dtype=ct)
    xhat, y = xp.empty_like(x3), xp.empty_like(x3)
    if x3.size:
        flags = (int(weight is not None), int(bias is not None))
        _kernel("batchnorm_forward")(x3, mean, inv_std, w, b, c, s, *flags, xhat, y)
    y, xhat = (a.reshape(x.shape).astype(dtype, copy=False) for a in (y, xhat))
    return y, xhat, mean.astype(dtype, copy=False), var.astype(dtype, copy=False)


def batchnorm_backward(grad, xhat, weight, inv_std):
    """``(dx, dweight, dbias)`` as ``numpy_ref.batchnorm_backward``."""
    if not _float(grad, xhat, weight, inv_std):
        return numpy_ref.batchnorm_backward(grad, xhat, weight, inv_std)
    xp = _cupy()
    dtype = grad.dtype
    ct = _compute_dtype(dtype)
    g3 = xp.ascontiguousarray(grad, dtype=ct).reshape(grad.shape[0], grad.shape[1], -1)
    h3 = xp.ascontiguousarray(xhat, dtype=ct).reshape(g3.shape)
    c, s = g3.shape[1], g3.shape[2]
    m = g3.shape[0] * s
    dbias = g3.sum(axis=(0, 2))
    dweight = (g3 * h3).sum(axis=(0, 2))
    inv_std = xp.ascontiguousarray(inv_std, dtype=ct)
    scale = inv_std if weight is None else xp.ascontiguousarray(weight, dtype=ct) * inv_std
    dx = xp.empty_like(g3)
    if g3.size:
        _kernel("batchnorm_backward")(g3, h3, dbias / m, dweight / m, scale, c, s, dx)
    return (
        dx.reshape(grad.shape).astype(dtype, copy=False),
        dweight.astype(dtype, copy=False),
        dbias.astype(dtype, copy=False),
    )


# ----------------------------------------------------------------------------- optimizers


def fused_sgd_update(
    param,
    grad,
    momentum_buffer,
    *,
    lr,
    momentum,
    dampening,
    nesterov,
    weight_decay,
    maximize,
    work=None,
):
    """``sgd.sgd_update`` in one kernel (same arguments; ``work`` is not needed)."""
    if momentum == 0:
        _kernel("sgd")(grad, -lr, weight_decay, int(maximize), int(weight_decay != 0), param)
        return None
    first = momentum_buffer is None
    if first:
        momentum_buffer = _cupy().empty_like(param)
    flags = (int(maximize), int(weight_decay != 0), int(nesterov), int(first))
    _kernel("sgd_momentum")(
        grad, -lr, weight_decay, momentum, 1 - dampening, *flags, param, momentum_buffer
    )
    return momentum_buffer


def fused_adam_update(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    *,
    step,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    amsgrad,
    maximize,
    decoupled,
    work=None,
):
    """``adam.adam_update`` in one kernel (same arguments; ``work`` is not needed)."""
    w1 = 1 - beta1
    scalars = (
        -(lr / (1 - beta1**step)),
        1 - lr * weight_decay,
        weight_decay,
        w1,
        1 - w1,
        beta2,
        1 - beta2,
        (1 - beta2**step) ** 0.5,
        eps,
        int(maximize),
        int(weight_decay != 0),
        int(decoupled),
        int(abs(w1) >= 0.5),
    )
    if amsgrad:
        _kernel("adam_amsgrad")(grad, *scalars, param, exp_avg, exp_avg_sq, max_exp_avg_sq)
    else:
        _kernel("adam")(grad, *scalars, param, exp_avg, exp_avg_sq)
