"""Op-table entries: scaled dot-product attention (plain, bool mask, causal, float masks,
seeded dropout), against a NumPy reference written from PyTorch's documented formula."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

import tinydl.functional as F
from tests.hardening.op_strategies import Case, Op, array, elems, floats
from tests.hardening.op_table_math import _dropout, _dropout_on

ENTRIES: list[Op] = []


def sdpa_ref(q, k, v, attn_mask=None, is_causal=False, scale=None, drop=None):
    """``softmax(q k^T * scale + mask) v`` in float64; a row with every key masked gives zeros
    (PyTorch 2.x's safe softmax). ``drop(weights)`` applies dropout to the weights."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.matmul(q * scale, np.swapaxes(k, -1, -2))
    if is_causal:
        attn_mask = np.tril(np.ones(s.shape[-2:], bool))
    if attn_mask is not None:
        s = np.where(attn_mask, s, -np.inf) if attn_mask.dtype == bool else s + attn_mask
    dead = np.all(s == -np.inf, axis=-1, keepdims=True)
    s = np.where(dead, 0.0, s)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    w = np.where(dead, 0.0, e / e.sum(axis=-1, keepdims=True))
    if drop is not None:
        w = drop(w)
    return np.matmul(w, v)


@st.composite
def _qkv(draw, mask=None, causal=False, dropout=False):
    """query (..., L, E), key (..., S, E), value (..., S, Ev) with broadcasting batch dims, and
    ``mask``: None, "bool" or "-inf" (fixed arguments) or "float" (a fourth, differentiable
    array)."""
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=2, max_side=2))
    L, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    E, Ev = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bq, bk, bv = batch.input_shapes
    arrays = [draw(array(bq + (L, E))), draw(array(bk + (S, E))), draw(array(bv + (S, Ev)))]
    kw = {"scale": draw(st.none() | floats(0.1, 2.0))}
    full = np.broadcast_shapes(bq, bk) + (L, S)  # the scores' shape
    mask_shape = full[draw(st.integers(0, len(full) - 2)) :]  # (L, S) up to the full shape
    if mask == "bool":
        kw["attn_mask"] = draw(hnp.arrays(bool, mask_shape))  # all-False rows: zero output
    elif mask == "-inf":
        values = draw(array(mask_shape, elems(-2, 2)))
        kw["attn_mask"] = np.where(draw(hnp.arrays(bool, mask_shape)), values, -np.inf)
    elif mask == "float":
        arrays.append(draw(array(mask_shape, elems(-2, 2))))
    if causal:
        kw["is_causal"] = True
    if dropout:
        kw["p"] = draw(st.sampled_from([0.1, 0.5]))
        kw["seed"] = draw(st.integers(0, 2**16))
    return Case(tuple(arrays), kw)


def _fn(q, k, v, *mask, **kw):
    return F.scaled_dot_product_attention(q, k, v, *mask, **kw)


def _ref(q, k, v, *mask, **kw):
    return sdpa_ref(q, k, v, *mask, **kw)


def _dropout_fn(q, k, v, p, seed, scale=None):
    return F.scaled_dot_product_attention(
        q, k, v, dropout_p=p, scale=scale, generator=np.random.default_rng(seed)
    )


def _dropout_ref(drop):
    def ref(q, k, v, p, seed, scale=None):
        return sdpa_ref(q, k, v, scale=scale, drop=lambda w: drop(w, p, seed))

    return ref


ENTRIES += [
    Op("scaled_dot_product_attention", _fn, _ref, _qkv()),
    Op("scaled_dot_product_attention", _fn, _ref, _qkv("bool"), variant="bool mask"),
    Op("scaled_dot_product_attention", _fn, _ref, _qkv(causal=True), variant="causal"),
    Op("scaled_dot_product_attention", _fn, _ref, _qkv("float"), variant="float mask"),
    Op("scaled_dot_product_attention", _fn, _ref, _qkv("-inf"), variant="-inf mask"),
    # NOTE: a seeded generator makes the dropout mask a fixed function of (shape, seed), so the
    # gradient checks apply; on a GPU the reference takes the device's own mask (as dropout's).
    Op("scaled_dot_product_attention", _dropout_fn, _dropout_ref(_dropout),
       _qkv(dropout=True), variant="dropout",
       device_ref=lambda b: _dropout_ref(lambda w, p, seed: _dropout_on(b)(w, p, seed))),
]  # fmt: skip
