"""Scaled dot-product attention, composed of differentiable ops (matmul, softmax, where,
dropout), so its backward is differentiable again (double backward) with no code of its own."""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor
from ..backend import as_array, get_array_module
from ..errors import DTypeError, ShapeError
from .activation import softmax
from .arithmetic import cast, matmul
from .dropout import dropout
from .elementwise import where

__all__ = ["scaled_dot_product_attention"]

_OP = "scaled_dot_product_attention"


def _check_inputs(query, key, value):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_OP}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ShapeError(
                f"{_OP}: {name} must be at least 2-D (..., seq, features), got {t.shape}"
            )
        if t.dtype.kind != "f":
            raise DTypeError(f"{_OP}: {name} must be floating point, got dtype {t.dtype}")
    if query.shape[-1] != key.shape[-1]:
        raise ShapeError(
            f"{_OP}: query (..., L, E) and key (..., S, E) need the same E, got query "
            f"{query.shape} and key {key.shape}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ShapeError(
            f"{_OP}: key (..., S, E) and value (..., S, Ev) need the same S, got key "
            f"{key.shape} and value {value.shape}"
        )
    try:
        np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except ValueError:
        raise ShapeError(
            f"{_OP}: batch dimensions of query {query.shape}, key {key.shape} and value "
            f"{value.shape} cannot be broadcast together"
        ) from None


def _mask_tensor(attn_mask, scores: Tensor) -> Tensor:
    """``attn_mask`` as a Tensor on ``scores``'s device, checked to broadcast to ``scores``."""
    if not isinstance(attn_mask, Tensor):
        xp = get_array_module(scores.data)
        attn_mask = Tensor.from_array(xp.asarray(as_array(attn_mask)))
    try:
        fits = np.broadcast_shapes(attn_mask.shape, scores.shape) == scores.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(
            f"{_OP}: attn_mask of shape {attn_mask.shape} does not broadcast to the attention "
            f"scores' shape {scores.shape} (..., L, S)"
        )
    kind = attn_mask.dtype.kind
    if kind not in "bf":
        raise DTypeError(f"{_OP}: attn_mask must be bool or floating point, got {attn_mask.dtype}")
    if kind == "f" and attn_mask.dtype != scores.dtype:
        attn_mask = cast(attn_mask, scores.dtype)
    return attn_mask


def attention_weights(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, generator=None
) -> tuple[Tensor, Tensor]:
    """:func:`scaled_dot_product_attention`'s output and its attention weights ``(..., L, S)``
    (after dropout), for layers that return the weights (``MultiheadAttention``)."""
    _check_inputs(query, key, value)
    if is_causal and attn_mask is not None:
        raise ValueError(f"{_OP}: pass either attn_mask or is_causal=True, not both")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{_OP}: dropout_p must be in [0, 1], got {dropout_p}")
    xp = get_array_module(query.data)
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    scores = matmul(query * scale, key.mT)  # (..., L, S)
    if is_causal:  # top-left aligned, as PyTorch: query i sees keys 0..i
        attn_mask = Tensor.from_array(xp.tril(xp.ones((L, S), dtype=bool)))
    dead = None
    if attn_mask is not None:
        mask = _mask_tensor(attn_mask, scores)
        scores = where(mask, scores, -math.inf) if mask.dtype == np.bool_ else scores + mask
        # NOTE: a row whose every score is -inf (all keys masked) would be NaN after softmax;
        # PyTorch 2.x gives zeros there (its "safe softmax"), with zero gradients. Its scores
        # are set to 0 before softmax (no NaN in the backward) and its weights to 0 after.
        dead = xp.all(scores.data == -xp.inf, axis=-1, keepdims=True)
        if dead.any():
            dead = Tensor.from_array(dead)
            scores = where(dead, 0.0, scores)
        else:
            dead = None
    weights = softmax(scores, -1)
    if dead is not None:
        weights = where(dead, 0.0, weights)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p, True, generator)
    return matmul(weights, value), weights


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    generator=None,
) -> Tensor:
    """``softmax(query @ key.mT * scale + mask) @ value``, as PyTorch 2.x's.

    Shapes: query ``(..., L, E)``, key ``(..., S, E)``, value ``(..., S, Ev)`` (batch dims
    broadcast) -> ``(..., L, Ev)``. ``scale`` defaults to ``1 / sqrt(E)``.

    ``attn_mask`` broadcasts to ``(..., L, S)``: a bool mask says which keys a query may attend
    to (True: takes part, as PyTorch), a float mask is added to the scores (``-inf`` masks).
    ``is_causal`` masks keys after the query's position (top-left aligned; not together with
    ``attn_mask``). A query whose keys are all masked gets a zero output and zero gradients (as
    PyTorch 2.x on the CPU), not NaN. ``dropout_p`` drops attention weights whenever it is > 0
    (pass 0 in evaluation, as in PyTorch); ``generator`` (a tinydl extension) is the
    ``np.random.Generator`` of the dropout mask, by default tinydl's seeded one.
    """
    out, _ = attention_weights(query, key, value, attn_mask, dropout_p, is_causal, scale, generator)
    return out
