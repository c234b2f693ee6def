"""Losses: cross_entropy, nll_loss, mse_loss, l1_loss, binary_cross_entropy_with_logits; one_hot.

Class losses share one form: ``loss_i = -sum_c A[i, c] * logp[i, c]`` where the coefficients
``A`` encode the target (one-hot or probabilities), class weights, ``ignore_index`` and label
smoothing; ``mean`` divides the summed loss by ``denom`` (the summed target weights for class
indices, the number of elements for probabilities), exactly as PyTorch does.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, is_grad_enabled
from ..backend import as_array, get_array_module, is_device_array
from ..debug import is_anomaly_enabled
from ..errors import DTypeError, ShapeError
from .activation import log_softmax, log_softmax_array

__all__ = [
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "l1_loss",
    "binary_cross_entropy_with_logits",
    "one_hot",
]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(op: str, reduction: str):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _reduce_array(loss, reduction, denom):
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: nan, as PyTorch
        return total / denom


def _spread_grad(grad, dim, reduction, denom):
    """The upstream gradient broadcastable against the (N, C, ...) input."""
    if reduction == "none":
        return grad.unsqueeze(dim)
    return grad / denom if reduction == "mean" else grad


def _weighted_sum(coef, values, dim):
    """``-sum_c coef * values``; a class with coefficient 0 adds nothing even at ``-inf``."""
    with np.errstate(invalid="ignore"):
        prod = coef * values
    # NOTE: 0 * -inf is nan; a masked-out logit must not poison the loss. copyto, not a mask
    # assignment, which reads the mask's count back to the host on a GPU.
    get_array_module(prod).copyto(prod, 0, where=coef == 0)
    return -prod.sum(axis=dim)


class CrossEntropy(Function):
    """Fused log_softmax + weighted negative log-likelihood (one node, one pass)."""

    @staticmethod
    def forward(ctx, x, coef, dim, reduction, denom):
        logp = log_softmax_array(x, dim)
        ctx.dim, ctx.reduction = dim, reduction
        p = get_array_module(x).exp(logp)
        ctx.save_for_backward(x, coef, denom, p, logp if ctx.needs_input_grad[1] else None)
        return _reduce_array(_weighted_sum(coef, logp, dim), reduction, denom)

    @staticmethod
    def backward(ctx, grad):
        x, coef, denom, p, logp = ctx.saved_tensors
        if not is_grad_enabled():  # NOTE: plain arrays, the same products: not 5 recorded ops
            return _cross_entropy_grads(ctx, grad.data, coef.data, denom.data, p.data, logp)
        # NOTE: create_graph: rebuild p and logp from x so this gradient is differentiable;
        # the saved arrays are constants (and give the same values on a first-order pass).
        logp = log_softmax(x, ctx.dim)
        p = logp.exp()
        g = _spread_grad(grad, ctx.dim, ctx.reduction, denom)
        gx = g * (p * coef.sum(ctx.dim, keepdim=True) - coef) if ctx.needs_input_grad[0] else None
        gc = -g * logp if ctx.needs_input_grad[1] else None
        return gx, gc, None, None, None


def _cross_entropy_grads(ctx, g, coef, denom, p, logp):
    """CrossEntropy's first-order backward on arrays (no graph to record)."""
    if ctx.reduction == "none":
        g = g.reshape(_with_axis(g.shape, ctx.dim))
    elif ctx.reduction == "mean":
        g = g / denom
    need_x, need_coef = ctx.needs_input_grad[:2]
    gx = g * (p * coef.sum(axis=ctx.dim, keepdims=True) - coef) if need_x else None
    gc = -g * logp.data if need_coef else None
    return gx, gc, None, None, None


def _with_axis(shape, dim):
    """``shape`` with a size-1 axis inserted at ``dim`` (``expand_dims`` without its checks)."""
    return shape[:dim] + (1,) + shape[dim:]


class NLLLoss(Function):
    """``-sum_c A * input`` for log-probabilities ``input`` (linear in both)."""

    @staticmethod
    def forward(ctx, x, coef, dim, reduction, denom):
        ctx.dim, ctx.reduction = dim, reduction
        ctx.save_for_backward(x, coef, denom)
        return _reduce_array(_weighted_sum(coef, x, dim), reduction, denom)

    @staticmethod
    def backward(ctx, grad):
        x, coef, denom = ctx.saved_tensors
        g = _spread_grad(grad, ctx.dim, ctx.reduction, denom)
        gx = -g * coef if ctx.needs_input_grad[0] else None
        gc = -g * x if ctx.needs_input_grad[1] else None
        return gx, gc, None, None, None


def _data(t):
    return t.data if isinstance(t, Tensor) else as_array(t)


def _class_view(op, weight, x, dim):
    """Class weights as an array shaped to broadcast along ``dim`` of ``x`` (or None)."""
    if weight is None:
        return None
    w = _data(weight)
    c = x.shape[dim]
    if w.shape != (c,):
        raise ShapeError(f"{op}: weight must have shape ({c},) for input {x.shape}, got {w.shape}")
    return w.astype(x.dtype, copy=False).reshape((c,) + (1,) * (x.ndim - dim - 1))


def _index_coefficients(op, x, target, weight, ignore_index, smoothing, dim):
    """Coefficients and denominator for class-index targets (PyTorch's nll/cross-entropy rules)."""
    xp = get_array_module(x)
    t = _data(target)
    if t.dtype.kind not in "iu":
        raise DTypeError(
            f"{op}: class-index target must be an integer tensor, got dtype {t.dtype}; class "
            f"probabilities must have the input's shape {x.shape}"
        )
    expected = x.shape[:dim] + x.shape[dim + 1 :]
    if t.shape != expected:
        raise ShapeError(
            f"{op}: target shape {t.shape} does not fit input {x.shape}: expected {expected} "
            f"(class indices) or {x.shape} (class probabilities)"
        )
    c = x.shape[dim]
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= c))
    # NOTE: on a GPU this check would wait for the device and read back every step; there an
    # out-of-range target makes the loss NaN instead (below), and anomaly mode checks as here.
    on_device = is_device_array(bad)
    if (not on_device or is_anomaly_enabled()) and bad.any():
        raise IndexError(f"{op}: target {int(t[bad].ravel()[0])} is out of bounds for {c} classes")
    safe = xp.where(keep, t, 0)
    classes = xp.arange(c).reshape((c,) + (1,) * (x.ndim - dim - 1))
    onehot = safe.reshape(_with_axis(safe.shape, dim)) == classes
    w = _class_view(op, weight, x, dim)
    picked = keep.astype(x.dtype) if w is None else w.reshape(-1)[safe] * keep
    if on_device:
        picked = xp.where(bad, xp.nan, picked)
    coef = onehot * picked.reshape(_with_axis(picked.shape, dim))
    if smoothing:
        spread = xp.expand_dims(keep, dim) * (1.0 if w is None else w)
        coef = coef * (1.0 - smoothing) + spread * (smoothing / c)
    return coef.astype(x.dtype, copy=False), xp.asarray(picked.sum(), dtype=x.dtype)


def _class_dim(op, x):
    if x.ndim == 0:
        raise ShapeError(f"{op}: input must have a class dimension, got a 0-d tensor")
    return 0 if x.ndim == 1 else 1


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits, fused with log_softmax and stable for any logit magnitude.

    ``input`` (N, C, d1, ...) or (C,); ``target`` either class indices (N, d1, ...) or ()
    (integers, ``ignore_index`` skipped) or class probabilities of ``input``'s shape (floats).
    ``weight`` (C,) rescales classes; ``mean`` divides by the summed weights of the non-ignored
    targets (by the number of elements for probabilities), as PyTorch does. ``label_smoothing``
    mixes the target with the uniform distribution. ``reduction='none'`` gives shape (N, d1, ...).
    Gradients reach ``input`` and probability targets; ``weight`` is a constant (as in PyTorch).
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    dim = _class_dim(op, input)
    if _data(target).shape != input.shape:
        coef, denom = _index_coefficients(
            op, input.data, target, weight, ignore_index, label_smoothing, dim
        )
        return CrossEntropy.apply(input, Tensor.from_array(coef), dim, reduction, denom)
    if _data(target).dtype.kind != "f":
        raise DTypeError(
            f"{op}: a target of the input's shape {input.shape} holds class probabilities and "
            f"must be floating point, got dtype {_data(target).dtype}"
        )
    c = input.shape[dim]
    probs = target if isinstance(target, Tensor) else Tensor.from_array(_data(target))
    if label_smoothing:
        probs = probs * (1.0 - label_smoothing) + label_smoothing / c
    w = _class_view(op, weight, input.data, dim)
    coef = probs if w is None else probs * Tensor.from_array(w)
    xp = get_array_module(input.data)
    denom = xp.asarray(input.data.size // c if c else 0, dtype=input.dtype)
    return CrossEntropy.apply(input, coef, dim, reduction, denom)


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C, d1, ...) or (C,) at class
    indices ``target`` (N, d1, ...) or (); weights, ``ignore_index`` and ``mean`` as PyTorch."""
    _check_reduction("nll_loss", reduction)
    dim = _class_dim("nll_loss", input)
    coef, denom = _index_coefficients("nll_loss", input.data, target, weight, ignore_index, 0, dim)
    return NLLLoss.apply(input, Tensor.from_array(coef), dim, reduction, denom)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error ``(input - target) ** 2`` (broadcast), reduced by ``reduction``."""
    _check_reduction("mse_loss", reduction)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Absolute error ``|input - target|`` (broadcast), reduced by ``reduction``."""
    _check_reduction("l1_loss", reduction)
    return _reduce((input - target).abs(), reduction)


class BCEWithLogits(Function):
    """``pw t softplus(-x) + (1 - t) softplus(x)``, elementwise, stable for any ``x``."""

    @staticmethod
    def forward(ctx, x, t, pos_weight):
        ctx.save_for_backward(x, t, pos_weight)
        xp = get_array_module(x)
        # NOTE: softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|)) shares the log term and never
        # overflows. Written without (1 - t) x, an infinite logit gives inf (as SciPy's
        # log_expit does) instead of inf - inf = NaN.
        pos = t if pos_weight is None else pos_weight * t
        neg = 1 - t
        log_term = xp.log1p(xp.exp(-xp.abs(x)))
        return neg * xp.maximum(x, 0) + pos * xp.maximum(-x, 0) + (pos + neg) * log_term

    @staticmethod
    def backward(ctx, grad):
        from .activation import softplus  # H1's stable softplus; needed only with pos_weight

        x, t, pw = ctx.saved_tensors
        gx = gt = gpw = None
        if ctx.needs_input_grad[0]:
            s = x.sigmoid()
            gx = grad * (s - t if pw is None else (1 + (pw - 1) * t) * (s - 1) + 1 - t)
        if ctx.needs_input_grad[1]:
            gt = -grad * x if pw is None else grad * ((pw - 1) * softplus(-x) - x)
        if pw is not None and ctx.needs_input_grad[2]:
            gpw = grad * t * softplus(-x)
        return gx, gt, gpw


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of logits ``input`` and probabilities ``target`` (same shape), stable
    for any magnitude. ``weight`` broadcasts to the input; ``pos_weight`` (C,) weighs positives
    along the last dimension."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    if not isinstance(target, Tensor):
        target = Tensor.from_array(_data(target).astype(input.dtype))
    if target.shape != input.shape:
        raise ShapeError(
            f"binary_cross_entropy_with_logits: target shape {target.shape} must equal input "
            f"shape {input.shape}"
        )
    loss = BCEWithLogits.apply(input, target, pos_weight)
    return _reduce(loss if weight is None else loss * weight, reduction)


def one_hot(t: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding: ``t`` (*) of class indices -> (*, num_classes); no gradient.
    ``num_classes=-1`` takes ``t.max() + 1``."""
    a = _data(t)
    if a.dtype.kind not in "iu":
        raise DTypeError(f"one_hot: expected an integer tensor, got dtype {a.dtype}")
    if num_classes == -1:
        if a.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass it")
        num_classes = int(a.max()) + 1
    if a.size and (int(a.min()) < 0 or int(a.max()) >= num_classes):
        raise ValueError(
            f"one_hot: class values must be in [0, {num_classes}), got values in "
            f"[{int(a.min())}, {int(a.max())}]"
        )
    xp = get_array_module(a)
    return Tensor.from_array((a[..., None] == xp.arange(num_classes)).astype(xp.int64))
