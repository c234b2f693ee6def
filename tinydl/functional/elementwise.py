"""Elementwise functions: exp, log, log1p, sqrt, abs, sin, cos, tanh, sigmoid, erf, maximum,
minimum, clamp, where. The activations built on them (relu, gelu, ...) are in ``activation.py``.

Each backward is written with tinydl ops on the saved input or output, so second derivatives
come for free; masks and signs of piecewise ops are constants (their derivative is zero).
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, Tensor
from ..backend import as_array, get_array_module
from ..debug import check_log_input
from ..errors import DTypeError, ShapeError
from ._util import binary, lift, lift_pair

__all__ = [
    "exp", "log", "log1p", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "erf", "maximum",
    "minimum", "clamp", "clip", "where",
]  # fmt: skip


def _floating(x) -> Tensor:
    """``x`` as a Tensor; integer and bool tensors become float32, as PyTorch promotes them."""
    x = lift(x)
    return x.float() if x.dtype.kind in "iub" else x


def _const(array, dtype) -> Tensor:
    """A constant (no-grad) Tensor of ``dtype`` from a backend array (a mask or a sign)."""
    return Tensor.from_array(array.astype(dtype, copy=False))


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


def exp(x: Tensor) -> Tensor:
    """e ** x."""
    return Exp.apply(_floating(x))


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x


def log(x: Tensor) -> Tensor:
    """Natural logarithm. Warns once when ``x`` comes from softmax or sigmoid (a fused op is
    stable where this is not)."""
    x = _floating(x)
    check_log_input(x)
    return Log.apply(x)


class Log1p(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log1p(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + x)


def log1p(x: Tensor) -> Tensor:
    """``log(1 + x)``, accurate for small ``x``."""
    return Log1p.apply(_floating(x))


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad / (2 * y)


def sqrt(x: Tensor) -> Tensor:
    """Square root (``inf`` gradient at 0, as PyTorch)."""
    return Sqrt.apply(_floating(x))


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _const(get_array_module(x.data).sign(x.data), grad.dtype)  # 0 at 0


def abs(x: Tensor) -> Tensor:
    """``|x|``; the gradient at 0 is 0, as in PyTorch."""
    return Abs.apply(x)


class Sin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * cos(x)


def sin(x: Tensor) -> Tensor:
    """Sine (radians)."""
    return Sin.apply(_floating(x))


class Cos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).cos(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return -grad * sin(x)


def cos(x: Tensor) -> Tensor:
    """Cosine (radians)."""
    return Cos.apply(_floating(x))


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(_floating(x))


class Sigmoid(Function):
    # the mark that makes ``log`` warn (tinydl.debug.check_log_input)
    log_warning = (
        "log(sigmoid(x)) is -inf once sigmoid underflows to 0 (x below about -745 in float64, "
        "-104 in float32); use -F.softplus(-x) instead (a stable logsigmoid), or "
        "F.binary_cross_entropy_with_logits on the logits for a loss"
    )

    @staticmethod
    def forward(ctx, x):
        xp = get_array_module(x)
        # NOTE: exp(-|x|) is at most 1, so neither branch overflows for any x.
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y * (1 - y)


def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``, computed without overflow for any ``x``."""
    return Sigmoid.apply(_floating(x))


# W. J. Cody's rational approximations (Math. Comp. 23, 1969; SPECFUN CALERF), float64.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)  # fmt: skip
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)  # fmt: skip
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)  # fmt: skip
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)  # fmt: skip
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)  # fmt: skip
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)  # fmt: skip


def _ratio(t, num, den):
    """``(num[-1] t^k + num[0] t^(k-1) + ... + num[k-1]) / (t^k + den[0] t^(k-1) + ...
    + den[k-1])`` with ``k = len(den)``, Horner's rule in Cody's layout."""
    n = len(den) - 1
    top, bottom = num[-1] * t, t
    for i in range(n):
        top, bottom = (top + num[i]) * t, (bottom + den[i]) * t
    return (top + num[n]) / (bottom + den[n])


def _erf_array(x):
    """erf of a backend array, within a few ulp in float64 (NumPy has no erf). Every branch is
    evaluated on inputs clipped to its own interval, so nothing overflows."""
    xp = get_array_module(x)
    x64 = x.astype(xp.float64, copy=False)
    y = xp.abs(x64)
    ys = xp.minimum(y, 0.46875)
    small = x64 * _ratio(ys * ys, _ERF_A, _ERF_B)  # |x| <= 0.46875
    ym = xp.clip(y, 0.46875, 4.0)
    # NOTE: erfc(6) < 2e-17, so erf is exactly +-1 in float64 from there on.
    yl = xp.clip(y, 4.0, 6.0)
    zl = 1 / (yl * yl)
    large = (1 / math.sqrt(math.pi) - zl * _ratio(zl, _ERF_P, _ERF_Q)) / yl
    mid = y <= 4.0
    scaled = xp.where(mid, _ratio(ym, _ERF_C, _ERF_D), large)  # erfc(y) * exp(y^2)
    yy = xp.where(mid, ym, yl)
    # exp(-y^2) as exp(-t^2) exp(-(y-t)(y+t)), t = y cut to 1/16: y*y's rounding error would
    # be magnified by exp
    t = xp.trunc(yy * 16) / 16
    erfc = xp.exp(-t * t) * xp.exp(-(yy - t) * (yy + t)) * scaled
    out = xp.where(y <= 0.46875, small, xp.copysign((0.5 - erfc) + 0.5, x64))
    return out.astype(x.dtype, copy=False)


class Erf(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _erf_array(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * exp(-(x * x)) * (2 / math.sqrt(math.pi))


def erf(x: Tensor) -> Tensor:
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt``."""
    return Erf.apply(_floating(x))


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return binary("maximum", get_array_module(a, b).maximum, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return _pick_grads(ctx, grad, a.data, b.data, a.data < b.data, a.data > b.data)


class Minimum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return binary("minimum", get_array_module(a, b).minimum, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return _pick_grads(ctx, grad, a.data, b.data, a.data > b.data, a.data < b.data)


def _pick_grads(ctx, grad, a, b, b_wins, a_wins):
    """The gradient goes to the winner; at a tie each side gets half (as PyTorch). A NaN makes
    both sides "win", which is also what PyTorch does."""
    xp = get_array_module(a, b)
    tie = a == b
    ga = gb = None
    if ctx.needs_input_grad[0]:
        ga = grad * _const(xp.where(tie, 0.5, xp.where(b_wins, 0.0, 1.0)), grad.dtype)
    if ctx.needs_input_grad[1]:
        gb = grad * _const(xp.where(tie, 0.5, xp.where(a_wins, 0.0, 1.0)), grad.dtype)
    return ga, gb


def maximum(a, b) -> Tensor:
    """Elementwise maximum with broadcasting; at ties each input gets half the gradient."""
    return Maximum.apply(*lift_pair(a, b))


def minimum(a, b) -> Tensor:
    """Elementwise minimum with broadcasting; at ties each input gets half the gradient."""
    return Minimum.apply(*lift_pair(a, b))


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        y = x if lo is None else xp.maximum(x, lo)
        return y if hi is None else xp.minimum(y, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        inside = get_array_module(x.data).ones(x.shape, bool)
        if ctx.lo is not None:
            inside &= x.data >= ctx.lo
        if ctx.hi is not None:
            inside &= x.data <= ctx.hi
        return grad * _const(inside, grad.dtype), None, None


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """``x`` limited to ``[min, max]`` (either may be None). The gradient is 1 inside the closed
    interval and 0 outside; with ``min > max`` every element is ``max``, as in PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be a number, got both None")
    for name, bound in (("min", min), ("max", max)):
        if isinstance(bound, Tensor):
            raise TypeError(
                f"clamp: {name} must be a number or None, got a Tensor of shape {bound.shape}; "
                "use maximum()/minimum() for tensor bounds"
            )
    x = lift(x)
    if x.dtype.kind in "iub" and any(isinstance(v, float) for v in (min, max)):
        x = x.float()
    dtype = x.dtype.type if x.dtype.kind == "f" else (lambda v: v)
    lo = None if min is None else dtype(min)
    hi = None if max is None else dtype(max)
    return Clamp.apply(x, lo, hi)


clip = clamp


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        try:
            return get_array_module(a, b).where(cond, a, b)
        except ValueError as exc:
            if "broadcast" not in str(exc):
                raise
            raise ShapeError(
                f"where: shapes of cond {tuple(cond.shape)}, a {tuple(a.shape)} and "
                f"b {tuple(b.shape)} cannot be broadcast together"
            ) from None

    @staticmethod
    def backward(ctx, grad):
        (cond,) = ctx.saved_tensors
        ga = where(cond, grad, 0) if ctx.needs_input_grad[1] else None
        gb = where(cond, 0, grad) if ctx.needs_input_grad[2] else None
        return None, ga, gb


def where(cond, a, b) -> Tensor:
    """``a`` where ``cond`` is True, else ``b``; the three broadcast together. ``cond`` is a bool
    Tensor or array; ``a`` and ``b`` are Tensors or numbers (a number takes the other's dtype)."""
    cond = cond if isinstance(cond, Tensor) else Tensor.from_array(as_array(cond))
    if cond.dtype != np.bool_:
        raise DTypeError(f"where: cond must be a bool tensor, got dtype {cond.dtype}")
    return Where.apply(cond, *lift_pair(a, b))
