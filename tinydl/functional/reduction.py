"""Reductions: sum, mean, max, min, var, std, logsumexp, prod, argmax, argmin, norm.

Every reduction takes ``dim`` as an int, a tuple of ints or ``None`` (all dimensions) and
``keepdim``. A backward first restores the reduced dimensions as size-1 dimensions
(``_keep``), then broadcasts against the input.
"""

from __future__ import annotations

import builtins as _builtins
from math import inf
from typing import NamedTuple

import numpy as np

from ..autograd import Function, Tensor, broadcast_to
from ..backend import get_array_module
from ..dtypes import default_float, is_floating
from ..errors import ShapeError
from ..grad_mode import is_grad_enabled
from . import elementwise
from ._util import normalize_dim

__all__ = [
    "sum",
    "mean",
    "max",
    "min",
    "argmax",
    "argmin",
    "var",
    "std",
    "logsumexp",
    "prod",
    "norm",
]


def _dims(op: str, dim, ndim: int) -> tuple:
    """Sorted, non-negative dims to reduce; ``None`` (or ``()``, as PyTorch) means all of them."""
    if isinstance(dim, list):
        dim = tuple(dim)
    if dim is None or dim == () or ndim == 0:
        if dim is not None:  # a 0-d tensor accepts dim 0 or -1, as in PyTorch
            for d in (dim,) if isinstance(dim, int) else dim:
                normalize_dim(op, d, ndim)
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = tuple(sorted({normalize_dim(op, d, ndim) for d in dims}))
    if len(out) != len(dims):
        raise ValueError(f"{op}: dim {dim} appears more than once")
    return out


def _keep_shape(shape: tuple, dims: tuple) -> tuple:
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def _keep(t: Tensor, shape: tuple, dims: tuple, keepdim: bool) -> Tensor:
    """``t`` (a reduced result) with the reduced dimensions back as size 1."""
    return t if keepdim else t.reshape(_keep_shape(shape, dims))


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        # NOTE: the array's method: np.sum's Python wrapper costs more than summing a tiny array
        return x.sum(axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        # NOTE: a 0-d gradient (a sum of everything) broadcasts as it is: no reshape op
        kept = grad if grad.data.ndim == 0 else _keep(grad, ctx.shape, ctx.dims, ctx.keepdim)
        return broadcast_to(kept, ctx.shape), None, None


def sum(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Sum over ``dim`` (int, tuple or None for all). ``(2, 3, 4)``, dim=1 -> ``(2, 4)``
    (``(2, 1, 4)`` with keepdim). Integers and bools sum to int64 as in PyTorch."""
    if dtype is not None:
        x = x.to(dtype)
    return Sum.apply(x, _dims("sum", dim, x.ndim), keepdim)


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` (int, tuple or None). Integer input gives float32."""
    dims = _dims("mean", dim, x.ndim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    return sum(x, dims, keepdim) / n


class ValuesIndices(NamedTuple):
    """What ``max``/``min`` with a ``dim`` return, like PyTorch's ``torch.return_types.max``."""

    values: Tensor
    indices: Tensor


class Extreme(Function):
    """max or min over ``dims``; the gradient is split evenly among tied elements."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, largest):
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim, ctx.largest = dims, keepdim, largest
        xp = get_array_module(x)
        return (xp.max if largest else xp.min)(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        xp = get_array_module(x.data)
        y = (xp.max if ctx.largest else xp.min)(x.data, axis=ctx.dims, keepdims=True)
        mask = (x.data == y).astype(x.dtype)
        weights = mask / mask.sum(axis=ctx.dims, keepdims=True)
        return _keep(grad, x.shape, ctx.dims, ctx.keepdim) * Tensor.from_array(weights), None, None, None


class ExtremeDim(Function):
    """max or min along one ``dim`` with the index of the (first) extreme element."""

    @staticmethod
    def forward(ctx, x, dim, keepdim, largest):
        xp = get_array_module(x)
        idx = (xp.argmax if largest else xp.argmin)(x, axis=dim, keepdims=True)
        values = xp.take_along_axis(x, idx, axis=dim)
        ctx.shape, ctx.dim, ctx.keepdim, ctx.idx = x.shape, dim, keepdim, idx
        if not keepdim:
            values, idx = values.squeeze(dim), idx.squeeze(dim)
        return values, idx.astype(xp.int64)

    @staticmethod
    def backward(ctx, grad, _grad_indices):
        xp = get_array_module(grad.data)
        mask = xp.zeros(ctx.shape, grad.dtype)
        xp.put_along_axis(mask, ctx.idx, 1, axis=ctx.dim)
        g = _keep(grad, ctx.shape, (ctx.dim,), ctx.keepdim)
        return g * Tensor.from_array(mask), None, None, None


def _extreme(op: str, x: Tensor, dim, keepdim: bool, largest: bool):
    if isinstance(dim, Tensor):  # PyTorch's max(a, b) is the elementwise maximum
        return (elementwise.maximum if largest else elementwise.minimum)(x, dim)
    if dim is None:
        _check_nonempty(op, x, tuple(range(x.ndim)))
        return Extreme.apply(x, tuple(range(x.ndim)), keepdim, largest)
    if not isinstance(dim, int):
        raise TypeError(
            f"{op}: dim must be an int or None, got {dim!r} (use amax-style dims "
            "through max(x) on a reshaped tensor)"
        )
    if x.ndim == 0:
        normalize_dim(op, dim, 0)
        return ValuesIndices(*ExtremeDim.apply(x.reshape(1), 0, False, largest))
    d = normalize_dim(op, dim, x.ndim)
    _check_nonempty(op, x, (d,))
    return ValuesIndices(*ExtremeDim.apply(x, d, keepdim, largest))


def _check_nonempty(op: str, x: Tensor, dims: tuple):
    if any(x.shape[d] == 0 for d in dims):
        raise ShapeError(f"{op}: cannot reduce an empty dimension (shape {x.shape}, dims {dims})")


def max(x: Tensor, dim=None, keepdim: bool = False):
    """The largest element (``dim=None``: a 0-d tensor), or ``(values, indices)`` along ``dim``.

    Gradients at ties: ``max(x)`` splits the gradient evenly among all tied maxima (as PyTorch);
    ``max(x, dim)`` sends it only to the element at the returned index (the first maximum).
    ``max(x, other_tensor)`` is ``maximum(x, other_tensor)``.
    """
    return _extreme("max", x, dim, keepdim, True)


def min(x: Tensor, dim=None, keepdim: bool = False):
    """The smallest element, or ``(values, indices)`` along ``dim``; ties as in ``max``."""
    return _extreme("min", x, dim, keepdim, False)


def _argextreme(op: str, x: Tensor, dim, keepdim: bool, largest: bool) -> Tensor:
    xp = get_array_module(x.data)
    fn = xp.argmax if largest else xp.argmin
    if dim is None:
        _check_nonempty(op, x, tuple(range(x.ndim)))
        idx = fn(x.data)
        shape = (1,) * x.ndim if keepdim else ()
        return Tensor.from_array(xp.asarray(idx, dtype=xp.int64).reshape(shape))
    d = normalize_dim(op, dim, x.ndim)
    if x.ndim == 0:
        return Tensor.from_array(xp.zeros((), xp.int64))
    _check_nonempty(op, x, (d,))
    return Tensor.from_array(fn(x.data, axis=d, keepdims=keepdim).astype(xp.int64))


def argmax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index (int64, no gradient) of the first largest element: of the flattened tensor when
    ``dim`` is None, else along ``dim``."""
    return _argextreme("argmax", x, dim, keepdim, True)


def argmin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index (int64, no gradient) of the first smallest element; see ``argmax``."""
    return _argextreme("argmin", x, dim, keepdim, False)


def _count(shape: tuple, dims: tuple) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def _floating(x: Tensor) -> Tensor:
    return x if is_floating(x.dtype) else x.to(default_float)


def _centered(x: Tensor, dims: tuple) -> Tensor:
    return x - mean(x, dims, keepdim=True)


class Var(Function):
    @staticmethod
    def forward(ctx, x, dims, correction, keepdim):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim = dims, keepdim
        ctx.denom = _builtins.max(_count(x.shape, dims) - correction, 0)
        c = x - x.mean(axis=dims, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # denom 0 gives inf/nan as PyTorch
            return xp.sum(c * c, axis=dims, keepdims=keepdim) / x.dtype.type(ctx.denom)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        scale = 2 / ctx.denom if ctx.denom else float("nan")
        g = _keep(grad, x.shape, ctx.dims, ctx.keepdim)
        return g * _centered(x, ctx.dims) * scale, None, None, None


def var(x: Tensor, dim=None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Variance over ``dim``: ``sum((x - mean)**2) / (N - correction)`` (``correction=1``:
    unbiased, ``0``: population). ``N <= correction`` gives inf or nan, as PyTorch."""
    x = _floating(x)
    return Var.apply(x, _dims("var", dim, x.ndim), correction, keepdim)


class Std(Function):
    @staticmethod
    def forward(ctx, x, dims, correction, keepdim):
        y = get_array_module(x).sqrt(Var.forward(ctx, x, dims, correction, keepdim))
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        y = _keep(y, x.shape, ctx.dims, ctx.keepdim)
        # NOTE: where std is 0 the centered values are 0 too; dividing by 1 there gives PyTorch's 0
        y = y + Tensor.from_array((y.data == 0).astype(y.dtype))
        g = _keep(grad, x.shape, ctx.dims, ctx.keepdim)
        return g * _centered(x, ctx.dims) / (y * ctx.denom), None, None, None


def std(x: Tensor, dim=None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Standard deviation, ``sqrt(var(x, dim, correction))``; its gradient is 0 where it is 0."""
    x = _floating(x)
    return Std.apply(x, _dims("std", dim, x.ndim), correction, keepdim)


def _finite_max(x, dims):
    """The max over ``dims`` (kept), with infinities replaced by 0 so ``x - m`` is never nan."""
    xp = get_array_module(x)
    m = xp.max(x, axis=dims, keepdims=True)
    return xp.where(xp.isfinite(m), m, 0).astype(x.dtype)


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp = get_array_module(x)
        ctx.dims, ctx.keepdim = dims, keepdim
        if x.size == 0:
            y = xp.full(_keep_shape(x.shape, dims), -xp.inf, x.dtype)
        else:
            # NOTE: subtracting the max keeps exp finite; an infinite max is replaced by 0 so
            # that inf - inf never makes nan (logsumexp of [inf, 1] is inf, of [-inf] is -inf).
            m = _finite_max(x, dims)
            with np.errstate(divide="ignore"):
                y = xp.log(xp.sum(xp.exp(x - m), axis=dims, keepdims=True)) + m
        y = y if keepdim else y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        g = _keep(grad, x.shape, ctx.dims, ctx.keepdim)
        if x.data.size == 0:
            return broadcast_to(g, x.shape), None, None
        # NOTE: softmax as exp(x - max) / sum, not exp(x - y): y rounds away the small terms when
        # |x| is huge (float32 1e4, or -1e30 + log 2), and the max is a constant shift.
        e = elementwise.exp(x - Tensor.from_array(_finite_max(x.data, ctx.dims)))
        return g * e / sum(e, ctx.dims, keepdim=True), None, None


def logsumexp(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``dim``, stable for any magnitude; its gradient is softmax."""
    x = _floating(x)
    return LogSumExp.apply(x, _dims("logsumexp", dim, x.ndim), keepdim)


class Prod(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim = dims, keepdim
        return get_array_module(x).prod(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        g = _keep(grad, x.shape, ctx.dims, ctx.keepdim)
        return g * _prod_of_others(x, ctx.dims), None, None


def _prod_of_others(x: Tensor, dims: tuple) -> Tensor:
    """For each element, the product of the other elements of its slice (zeros allowed)."""
    xp = get_array_module(x.data)
    zero = x.data == 0
    if not is_grad_enabled():  # values only: count the zeros of each slice, on the device
        safe = xp.where(zero, 1, x.data)
        p = xp.prod(safe, axis=dims, keepdims=True)
        zeros = zero.sum(axis=dims, keepdims=True)
        others = xp.where(zeros == 0, p / safe, xp.where((zeros == 1) & zero, p, 0))
        return Tensor.from_array(others.astype(x.dtype))
    if not zero.any():  # NOTE: a host read, paid only when building a graph (double backward)
        return prod(x, dims, keepdim=True) / x
    # NOTE: differentiable again (double backward): put the K reduced elements of each slice
    # in a K x K matrix with ones on the diagonal and take its row products. O(K^2) memory, so
    # it runs only when a graph is being built and the slice holds a zero.
    keep = [i for i in range(x.ndim) if i not in dims]
    perm = keep + list(dims)
    batch = tuple(x.shape[i] for i in keep)
    k = _count(x.shape, dims)
    rows = x.permute(perm).reshape(batch + (k,)).unsqueeze(-2)
    eye = xp.eye(k, dtype=x.dtype)
    others = prod(rows * Tensor.from_array(1 - eye) + Tensor.from_array(eye), -1)
    others = others.reshape(batch + tuple(x.shape[d] for d in dims))
    return others.permute(tuple(int(i) for i in np.argsort(perm)))


def prod(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Product over ``dim``; the gradient (product of the other elements) is right with zeros.

    Without zeros the gradient is ``prod / x``, as in PyTorch: its own derivative loses
    precision when an element is tiny next to the others (1e-60 beside 1)."""
    return Prod.apply(x, _dims("prod", dim, x.ndim), keepdim)


class Norm(Function):
    @staticmethod
    def forward(ctx, x, p, dims, keepdim):
        xp = get_array_module(x)
        ctx.p, ctx.dims, ctx.keepdim = p, dims, keepdim
        a = xp.abs(x)
        if p == 2:
            y = xp.sqrt(xp.sum(x * x, axis=dims, keepdims=keepdim))
        elif p == 1:
            y = xp.sum(a, axis=dims, keepdims=keepdim)
        elif p in (inf, -inf):
            y = (xp.max if p > 0 else xp.min)(a, axis=dims, keepdims=keepdim)
        elif p == 0:
            y = xp.sum(x != 0, axis=dims, keepdims=keepdim).astype(x.dtype)
        else:
            y = xp.sum(a**p, axis=dims, keepdims=keepdim) ** (1 / p)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        p, dims = ctx.p, ctx.dims
        g = _keep(grad, x.shape, dims, ctx.keepdim)
        y = _keep(y, x.shape, dims, ctx.keepdim)
        xp = get_array_module(x.data)
        sign = Tensor.from_array(xp.sign(x.data))
        if p == 0:
            return g * 0 * x, None, None, None
        if p == 1:
            return g * sign, None, None, None
        if p in (inf, -inf):  # split evenly among the elements that reach the norm
            mask = (xp.abs(x.data) == y.data).astype(x.dtype)
            w = sign.data * mask / mask.sum(axis=dims, keepdims=True)
            return g * Tensor.from_array(w), None, None, None
        # NOTE: a zero norm means x is 0 there; dividing by 1 instead gives PyTorch's 0 gradient
        y = y + Tensor.from_array((y.data == 0).astype(y.dtype))
        if p == 2:
            return g * x / y, None, None, None
        return g * sign * (x * sign) ** (p - 1) / y ** (p - 1), None, None, None


def norm(x: Tensor, p=2, dim=None, keepdim: bool = False) -> Tensor:
    """Vector p-norm over ``dim`` (all elements when None): p = 2 or 'fro' (Euclidean), 1,
    inf, -inf, 0 (count of non-zeros) or any positive number."""
    if p == "fro":
        p = 2
    if isinstance(p, str) or not (p == 0 or p > 0 or p == -inf):
        raise ValueError(f"norm: p must be 'fro', a positive number, 0, inf or -inf, got {p!r}")
    x = _floating(x)
    dims = _dims("norm", dim, x.ndim)
    if p in (inf, -inf):
        _check_nonempty("norm", x, dims)
    return Norm.apply(x, float(p), dims, keepdim)
