"""Embedding: a lookup table of learned vectors, one row per token id."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Parameter, empty
from . import init
from .module import Module

__all__ = ["Embedding"]


class Embedding(Module):
    """``weight[input]``: integer ids of any shape -> ``input.shape + (embedding_dim,)``.

    As ``torch.nn.Embedding``: weight ``(num_embeddings, embedding_dim)`` drawn from N(0, 1),
    the row at ``padding_idx`` zero and kept out of the gradient."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, dtype=None
    ):
        super().__init__()
        if num_embeddings < 0 or embedding_dim < 0:
            raise ValueError(
                f"Embedding: sizes must be non-negative, got ({num_embeddings}, {embedding_dim})"
            )
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} is out of range for "
                    f"{num_embeddings} embeddings"
                )
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
