"""Transformer blocks and positional encodings: TransformerEncoderLayer (PyTorch's names),
a causal pre-norm decoder block for GPT-style language models, sinusoidal and learned
positional encodings."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Parameter, empty
from . import init
from .activation import Dropout
from .attention import MultiheadAttention
from .linear import Linear
from .module import Module
from .normalization import LayerNorm

__all__ = [
    "TransformerEncoderLayer",
    "CausalSelfAttentionBlock",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _activation(name_or_fn, owner: str):
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in _ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation must be 'relu', 'gelu' or a callable, got {name_or_fn!r}"
        )
    return _ACTIVATIONS[name_or_fn]


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward network, as PyTorch's ``nn.TransformerEncoderLayer``
    (same submodules: ``self_attn``, ``linear1``, ``dropout``, ``linear2``, ``norm1``,
    ``norm2``, ``dropout1``, ``dropout2``, so state dicts map one to one).

    ``norm_first=False`` (post-norm, the original Transformer): ``x = norm1(x + sa(x))``,
    ``x = norm2(x + ff(x))``; ``norm_first=True`` (pre-norm): ``x = x + sa(norm1(x))``,
    ``x = x + ff(norm2(x))``. ``forward(src, src_mask=None, src_key_padding_mask=None,
    is_causal=False)`` with masks as :class:`MultiheadAttention`'s; ``src`` is ``(S, N, E)``,
    ``(N, S, E)`` with ``batch_first``, or ``(S, E)``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        dtype=None,
    ):
        super().__init__()
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)
        self.norm_first = norm_first
        # NOTE: a function, not a submodule (as PyTorch), so the state dict has no entry for it
        self.activation = _activation(activation, "TransformerEncoderLayer")

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(
            x, x, x, key_padding_mask=key_padding_mask, need_weights=False,
            attn_mask=attn_mask, is_causal=is_causal,
        )[0]  # fmt: skip
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class CausalSelfAttentionBlock(Module):
    """A GPT-style decoder block (tinydl-only; PyTorch's ``TransformerDecoderLayer`` also has
    cross-attention, this one has none): pre-norm causal self-attention and an MLP, each added
    back to the residual stream::

        x = x + dropout(attn(ln1(x)))           # causal: position t sees positions <= t
        x = x + dropout(fc2(act(fc1(ln2(x)))))  # fc1: d_model -> dim_feedforward

    Input and output ``(N, T, d_model)`` (batch first). ``dim_feedforward`` defaults to
    ``4 * d_model``; ``activation`` is "gelu" (GPT-2) or "relu". ``forward(x,
    key_padding_mask=None)``: the optional ``(N, T)`` mask is True at padding positions.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        activation="gelu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        dtype=None,
    ):
        super().__init__()
        hidden = 4 * d_model if dim_feedforward is None else dim_feedforward
        self.ln1 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=True, dtype=dtype
        )
        self.ln2 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.fc1 = Linear(d_model, hidden, bias=bias, dtype=dtype)
        self.fc2 = Linear(hidden, d_model, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.activation = _activation(activation, "CausalSelfAttentionBlock")

    def forward(self, x, key_padding_mask=None):
        if x.ndim != 3:
            raise ShapeError(f"CausalSelfAttentionBlock: x must be (N, T, d_model), got {x.shape}")
        h = self.ln1(x)
        a = self.attn(
            h, h, h, key_padding_mask=key_padding_mask, need_weights=False, is_causal=True
        )[0]
        x = x + self.dropout(a)
        return x + self.dropout(self.fc2(self.activation(self.fc1(self.ln2(x)))))


def _seq_len(owner, x, batch_first, max_len, d_model) -> int:
    if x.ndim != 3 or x.shape[-1] != d_model:
        layout = "(N, T, C)" if batch_first else "(T, N, C)"
        raise ShapeError(f"{owner}: input must be {layout} with C = {d_model}, got {x.shape}")
    t = x.shape[1] if batch_first else x.shape[0]
    if t > max_len:
        raise ShapeError(
            f"{owner}: sequence length {t} exceeds max_len {max_len} (input {x.shape})"
        )
    return t


def _add_positions(x: Tensor, table: Tensor, t: int, batch_first: bool) -> Tensor:
    rows = table[:t]  # (T, C)
    return x + (rows if batch_first else rows.unsqueeze(1))


def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    """``pe[pos, 2i] = sin(pos / 10000^(2i/d_model))``, ``pe[pos, 2i+1] = cos(...)``, float64."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq)[:, : d_model // 2]
    return pe


class SinusoidalPositionalEncoding(Module):
    """Adds the fixed sinusoidal encoding of "Attention Is All You Need" to ``x`` (tinydl-only
    layer; PyTorch's tutorials write it by hand). ``x`` is ``(N, T, C)`` with ``batch_first``
    (the default), else ``(T, N, C)``; ``T <= max_len``.

    NOTE: the table is a non-persistent buffer ``pe`` ``(max_len, d_model)``: it is computed, not
    learned, so state dicts do not carry it.
    """

    def __init__(self, d_model: int, max_len: int = 5000, batch_first: bool = True, dtype=None):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        table = sinusoidal_table(max_len, d_model).astype(dtype or np.float32)
        self.register_buffer("pe", Tensor.from_array(table), persistent=False)

    def forward(self, x):
        t = _seq_len(
            "SinusoidalPositionalEncoding", x, self.batch_first, self.max_len, self.d_model
        )
        pe = self.pe
        if pe.dtype != x.dtype or type(pe.data) is not type(x.data):
            xp = get_array_module(x.data)
            pe = Tensor.from_array(xp.asarray(pe.data[:t]).astype(x.dtype))
        return _add_positions(x, pe, t, self.batch_first)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, batch_first={self.batch_first}"


class LearnedPositionalEmbedding(Module):
    """Adds a learned vector per position to ``x`` (GPT-style; tinydl-only layer): ``weight``
    ``(max_len, d_model)``, initialised N(0, 1) like an ``nn.Embedding``'s, its first ``T`` rows
    added to ``x`` ``(N, T, C)`` (``batch_first``, the default) or ``(T, N, C)``."""

    def __init__(self, max_len: int, d_model: int, batch_first: bool = True, dtype=None):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        self.weight = Parameter(empty(max_len, d_model, dtype=dtype))
        init.normal_(self.weight)

    def forward(self, x):
        t = _seq_len("LearnedPositionalEmbedding", x, self.batch_first, self.max_len, self.d_model)
        return _add_positions(x, self.weight, t, self.batch_first)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}, batch_first={self.batch_first}"
