"""Activations: relu, leaky_relu, elu, gelu, softplus, and softmax / log_softmax along a dim.

Each is one ``Function`` rather than a composition of elementwise ops: one node in the graph,
and stable where the composition would overflow or lose precision; the backwards are written with tinydl ops on
the saved input or output, so second derivatives come for free. Softmax and log-softmax subtract
the maximum before ``exp``, so logits of any magnitude (``[-1000, 1]``, ``+-1e20``) give exact
results without overflow. The examples (``import tinydl as td``) run as tests.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module, threads
from ..backend.kernels import numba_loops_for, relu_ref
from ..grad_mode import is_grad_enabled
from ._util import normalize_dim
from .arithmetic import add
from .elementwise import _const, _erf_array, _floating, erf, exp, sigmoid, tanh, where

__all__ = ["relu", "add_relu", "leaky_relu", "elu", "gelu", "softplus", "softmax", "log_softmax"]


class Relu(Function):
    @staticmethod
    def forward(ctx, x):
        y = _relu_arrays("relu_forward", x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if not is_grad_enabled():  # no graph to build: the same product on plain arrays
            # NOTE: a multiply by the mask measured 5x faster than np.where (2.7 vs 15 ms)
            return _relu_arrays("relu_backward", grad.data, y.data)
        return grad * _const(~(y.data <= 0), grad.dtype)  # 0 at 0; NaN passes, as PyTorch


# NOTE: below this many elements NumPy's ufunc is as fast (the MLP's 128x256: 15 us), and a
# model with no other Numba kernel does not import Numba (0.5 s, ~100 MiB resident) for it
_LOOP_MIN = 1 << 16


def _relu_arrays(name: str, *arrays):
    """ReLU's array kernel ``name`` on ``arrays``, into a new array: the compiled loop
    (``numba_relu``) for C-contiguous NumPy arrays of one float32/float64 dtype and at least
    ``_LOOP_MIN`` elements under the Numba kernels, else the NumPy reference (``relu_ref``;
    CuPy arrays, integers, strided views, small arrays) split into row shares when large.
    NOTE: the loop runs serial: at 128x6x28x28 (2.4 MB) 103 us against 160 us in two shares,
    the hand-off costing more than the second core saves."""
    a = arrays[0]
    if (
        a.size >= _LOOP_MIN
        and all(b.flags.c_contiguous for b in arrays)  # before numba_loops_for loads Numba
        and numba_loops_for(*arrays)
    ):
        from ..backend.kernels import numba_relu

        return getattr(numba_relu, name)(*arrays, out=np.empty_like(a))
    return threads.map_rows(getattr(relu_ref, name), get_array_module(a).empty_like(a), *arrays)


def relu(x: Tensor) -> Tensor:
    """``max(x, 0)``; the gradient at 0 is 0.

    >>> relu(td.tensor([-1.0, 0.0, 2.0]))
    tensor([0., 0., 2.])
    """
    return Relu.apply(x)


class AddRelu(Function):
    @staticmethod
    def forward(ctx, a, b):
        y = _relu_arrays("add_relu_forward", a, b)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        g = Relu.backward(ctx, grad)
        return g, g


def add_relu(a, b) -> Tensor:
    """``relu(a + b)`` as one op: one pass over the arrays forward and no sum kept (a residual
    block's output). Operands of different shapes or dtypes take ``relu(a + b)``.

    >>> add_relu(td.tensor([-1.0, 0.5]), td.tensor([0.5, 0.5]))
    tensor([0., 1.])
    """
    if (
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.device == b.device
    ):
        return AddRelu.apply(a, b)
    return relu(add(a, b))


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return get_array_module(x).where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        factor = get_array_module(x.data).where(x.data > 0, 1, ctx.slope)
        return grad * _const(factor, grad.dtype), None


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` where ``x > 0``, else ``negative_slope * x`` (that slope also at 0, as PyTorch).

    >>> leaky_relu(td.tensor([-2.0, 0.0, 3.0]), 0.25)
    tensor([-0.5,  0. ,  3. ])
    """
    return LeakyRelu.apply(x, float(negative_slope))


class Elu(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        xp = get_array_module(x)
        y = xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))
        ctx.save_for_backward(x, y)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        # alpha * exp(x) written as y + alpha, so its own derivative flows through y
        return grad * where(x.data > 0, 1, y + ctx.alpha), None


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``.

    >>> elu(td.tensor([-1.0, 0.0, 2.0]))
    tensor([-0.6321,  0.    ,  2.    ])
    """
    return Elu.apply(_floating(x), float(alpha))


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


class Gelu(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 0.5 * x * (1 + _erf_array(x * (1 / math.sqrt(2))))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
        pdf = exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return grad * (cdf + x * pdf)


class GeluTanh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        inner = _SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)
        return 0.5 * x * (1 + get_array_module(x).tanh(inner))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        t = tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
        dinner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
        return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """``x * Phi(x)`` (``approximate="none"``, exact erf) or PyTorch's ``"tanh"`` approximation
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    >>> gelu(td.tensor([-1.0, 0.0, 1.5]))
    tensor([-0.1587,  0.    ,  1.3998])
    >>> gelu(td.tensor([-1.0, 0.0, 1.5]), approximate="tanh")
    tensor([-0.1588,  0.    ,  1.3996])
    """
    if approximate == "none":
        return Gelu.apply(_floating(x))
    if approximate == "tanh":
        return GeluTanh.apply(_floating(x))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class Softplus(Function):
    @staticmethod
    def forward(ctx, x, beta, threshold):
        xp = get_array_module(x)
        bx = x * beta
        # NOTE: max(bx, 0) + log1p(exp(-|bx|)) never overflows, even with a huge threshold.
        soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        return xp.where(bx > threshold, x, soft)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        linear = x.data * ctx.beta > ctx.threshold
        return grad * where(linear, 1, sigmoid(x * ctx.beta)), None, None


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x > threshold``.

    >>> softplus(td.tensor([-1000.0, 0.0, 30.0]))
    tensor([ 0.    ,  0.6931, 30.    ])
    """
    if beta == 0:
        raise ValueError(f"softplus: beta must be nonzero, got {beta}")
    return Softplus.apply(_floating(x), float(beta), float(threshold))


def _shifted(x, axis, finite=False):
    """``x - max(x)`` along ``axis`` (a fresh array): every entry <= 0, the largest exactly 0.
    With ``finite``, an infinite or NaN maximum is replaced by 0 (``x`` itself is returned)."""
    # NOTE: with logits like +-1e308 the difference overflows to -inf, whose exp is the exact 0.
    with np.errstate(over="ignore", invalid="ignore"):
        m = x.max(axis=axis, keepdims=True)
        if finite:
            m = get_array_module(x).where(get_array_module(x).isfinite(m), m, 0).astype(x.dtype)
        return x - m


def log_softmax_array(x, axis):
    """Stable log-softmax of a raw array (shared with the fused cross-entropy).

    Infinities follow SciPy's ``log_softmax``: next to a ``+inf`` logit the finite entries are
    ``-inf`` (the ``+inf`` one is NaN), and a row of ``-inf`` is NaN."""
    xp = get_array_module(x)
    # NOTE: an infinite max is not subtracted (inf - inf would make every entry NaN).
    z = _shifted(x, axis, finite=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        z -= xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
    return z


class Softmax(Function):
    # the mark that makes ``log`` warn (tinydl.debug.check_log_input)
    log_warning = (
        "log(softmax(x)) is -inf where softmax underflows to 0 (a logit about 104 below the "
        "largest in float32, 745 in float64) and its gradient is then NaN; use "
        "F.log_softmax(x, dim) instead (or F.cross_entropy on the logits, which fuses "
        "log_softmax and nll_loss)"
    )

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        if x.size == 0:  # max() refuses an empty axis
            y = x.copy()
        else:
            y = get_array_module(x).exp(_shifted(x, dim))
            y /= y.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        gy = grad * y
        return gy - y * gy.sum(ctx.dim, keepdim=True), None


def _axis(op, x, dim):
    # a 0-d tensor is one "row" of one element; reductions then take axis=None
    return normalize_dim(op, dim, x.ndim) if x.ndim else None


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """``exp(x) / exp(x).sum(dim)``, computed stably. Any shape; output has ``x``'s shape.

    >>> softmax(td.tensor([1.0, 2.0, 1000.0]))
    tensor([0., 0., 1.])
    """
    return Softmax.apply(x, _axis("softmax", x, dim))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        y = x.copy() if x.size == 0 else log_softmax_array(x, dim)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad - y.exp() * grad.sum(ctx.dim, keepdim=True), None


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """``x - logsumexp(x, dim)``, computed stably. Any shape; output has ``x``'s shape.

    >>> log_softmax(td.tensor([1000.0, 1000.0]))  # exp(1000) would overflow
    tensor([-0.6931, -0.6931])
    """
    return LogSoftmax.apply(x, _axis("log_softmax", x, dim))
