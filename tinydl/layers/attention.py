"""MultiheadAttention, with PyTorch's parameter names so its state dict maps one to one."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import as_array, get_array_module
from ..errors import DTypeError, ShapeError
from ..functional.attention import attention_weights
from ..tensor import Parameter, empty
from . import init
from .linear import Linear
from .module import Module

__all__ = ["MultiheadAttention"]

_OP = "MultiheadAttention"


def _additive(mask, name: str, dtype, xp) -> Tensor:
    """A PyTorch-style MultiheadAttention mask as an additive float mask: a bool mask is True
    where attending is NOT allowed (the opposite of scaled_dot_product_attention's), so True
    becomes -inf; a float mask is added as it is."""
    if not isinstance(mask, Tensor):
        mask = Tensor.from_array(xp.asarray(as_array(mask)))
    if mask.dtype == np.bool_:
        return Tensor.from_array(xp.where(mask.data, -xp.inf, 0.0).astype(dtype))
    if mask.dtype.kind != "f":
        raise DTypeError(f"{_OP}: {name} must be bool or floating point, got {mask.dtype}")
    return mask if mask.dtype == dtype else F.cast(mask, dtype)


class MultiheadAttention(Module):
    """Multi-head attention as PyTorch's ``nn.MultiheadAttention``: ``num_heads`` heads of
    ``embed_dim // num_heads`` features each over the projected query, key and value.

    Parameters (PyTorch's names): ``in_proj_weight`` ``(3*embed_dim, embed_dim)`` (the query,
    key and value projections stacked), ``in_proj_bias`` ``(3*embed_dim,)``, ``out_proj`` (a
    Linear). Not supported: ``kdim``/``vdim`` other than ``embed_dim``, ``add_bias_kv`` and
    ``add_zero_attn``.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)``: query ``(L, N, E)`` (``(N, L, E)`` with
    ``batch_first``, or unbatched ``(L, E)``), key and value ``(S, N, E)``. Masks as PyTorch's:
    ``key_padding_mask`` ``(N, S)`` and ``attn_mask`` ``(L, S)`` or ``(N*num_heads, L, S)``,
    bool True = NOT allowed to attend, or float = added to the scores. Returns ``(output,
    weights)``: weights ``(N, L, S)`` averaged over heads, ``(N, num_heads, L, S)`` per head, or
    None without ``need_weights``.

    NOTE: ``is_causal=True`` without ``attn_mask`` applies the causal mask (PyTorch requires the
    mask there and takes ``is_causal`` as a hint only); with ``attn_mask`` the mask is used as
    given. A query with every key masked gets zero weights (PyTorch's weights are NaN then).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        dtype=None,
    ):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"{_OP}: embed_dim and num_heads must be positive, got {embed_dim}, {num_heads}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"{_OP}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise ValueError(f"{_OP}: kdim/vdim other than embed_dim are not supported")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{_OP}: dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, dtype=dtype))
        self.in_proj_bias = Parameter(empty(3 * embed_dim, dtype=dtype)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:  # as PyTorch's _reset_parameters
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, x: Tensor, i: int) -> Tensor:
        e = self.embed_dim
        w = self.in_proj_weight[i * e : (i + 1) * e]
        b = None if self.in_proj_bias is None else self.in_proj_bias[i * e : (i + 1) * e]
        return F.linear(x, w, b)

    def _heads(self, x: Tensor) -> Tensor:
        n, t, _ = x.shape  # (N, T, E) -> (N, H, T, D)
        return x.reshape(n, t, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def _check(self, query, key, value):
        e = self.embed_dim
        if query.ndim not in (2, 3) or query.shape[-1] != e:
            raise ShapeError(
                f"{_OP}: query must be (L, N, {e}), (N, L, {e}) with batch_first or (L, {e}), "
                f"got {query.shape}"
            )
        for name, t in (("key", key), ("value", value)):
            if t.ndim != query.ndim or t.shape[-1] != e:
                raise ShapeError(
                    f"{_OP}: {name} must have query's {query.ndim} dims and {e} features, got "
                    f"{name} {t.shape} for query {query.shape}"
                )
        if key.shape[:-1] != value.shape[:-1]:
            raise ShapeError(f"{_OP}: key {key.shape} and value {value.shape} differ in length")
        if query.ndim == 3:
            nq, nk = (
                (query.shape[0], key.shape[0])
                if self.batch_first
                else (query.shape[1], key.shape[1])
            )
            if nq != nk:
                raise ShapeError(
                    f"{_OP}: query {query.shape} and key {key.shape} differ in batch size"
                )

    def _mask(self, key_padding_mask, attn_mask, n, L, S, dtype, xp):
        """The two masks merged into one additive mask broadcasting to (N, H, L, S), or None."""
        total = None
        if key_padding_mask is not None:
            kpm = _additive(key_padding_mask, "key_padding_mask", dtype, xp)
            if kpm.shape != (n, S):
                raise ShapeError(
                    f"{_OP}: key_padding_mask must have shape (N, S) = {(n, S)}, got {kpm.shape}"
                )
            total = kpm.reshape(n, 1, 1, S)
        if attn_mask is not None:
            am = _additive(attn_mask, "attn_mask", dtype, xp)
            if am.shape == (L, S):
                pass
            elif am.shape == (n * self.num_heads, L, S):
                am = am.reshape(n, self.num_heads, L, S)
            else:
                raise ShapeError(
                    f"{_OP}: attn_mask must have shape (L, S) = {(L, S)} or (N*num_heads, L, S) "
                    f"= {(n * self.num_heads, L, S)}, got {am.shape}"
                )
            total = am if total is None else total + am
        return total

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask=None,
        need_weights: bool = True,
        attn_mask=None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ):
        self._check(query, key, value)
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.reshape(1, -1)
        elif not self.batch_first:  # (T, N, E) -> (N, T, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        if query is key and key is value:  # self-attention: one product for q, k and v
            q, k, v = F.chunk(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3, -1)
        else:
            q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        n, L, S = query.shape[0], query.shape[1], key.shape[1]
        xp = get_array_module(q.data)
        if is_causal and attn_mask is None:  # True: not allowed, as PyTorch's masks here
            attn_mask = xp.triu(xp.ones((L, S), dtype=bool), 1)
        mask = self._mask(key_padding_mask, attn_mask, n, L, S, q.dtype, xp)
        p = self.dropout if self.training else 0.0
        out, weights = attention_weights(self._heads(q), self._heads(k), self._heads(v), mask, p)
        out = out.permute(0, 2, 1, 3).reshape(n, L, self.embed_dim)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, weights.squeeze(0) if unbatched else weights

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"batch_first={self.batch_first}"
        )
