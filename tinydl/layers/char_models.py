"""The model zoo for characters: three next-character models of increasing context.

Token ids are integers in ``[0, vocab_size)``. ``CharMLP`` sees a fixed window of the last
``block_size`` characters and returns ``(N, vocab_size)`` logits for the next one;
``CharLSTM`` and ``CharTransformer`` read a whole sequence ``(N, T)`` and return ``(N, T,
vocab_size)``: at every position the logits of the character that follows it.
"""

from __future__ import annotations

from ..errors import ShapeError
from .activation import Dropout
from .container import ModuleList
from .embedding import Embedding
from .linear import Linear
from .module import Module
from .normalization import LayerNorm
from .recurrent import LSTM
from .transformer import CausalSelfAttentionBlock, LearnedPositionalEmbedding

__all__ = ["CharMLP", "CharLSTM", "CharTransformer", "CHAR_MODELS"]


def _ids(owner: str, x, ndim: int, what: str):
    if x.ndim != ndim:
        raise ShapeError(f"{owner}: input must be {what} token ids, got shape {x.shape}")


class CharMLP(Module):
    """Bengio et al. 2003: embed each of the ``block_size`` context characters, concatenate,
    one tanh hidden layer, logits. ``(N, block_size)`` ids -> ``(N, vocab_size)``."""

    def __init__(self, vocab_size: int, block_size: int = 3, n_embd: int = 10, n_hidden: int = 200):
        super().__init__()
        self.block_size = block_size
        self.embed = Embedding(vocab_size, n_embd)
        self.hidden = Linear(block_size * n_embd, n_hidden)
        self.out = Linear(n_hidden, vocab_size)

    def forward(self, x):
        _ids("CharMLP", x, 2, "(N, block_size)")
        if x.shape[1] != self.block_size:
            raise ShapeError(
                f"CharMLP: context must be {self.block_size} characters wide, got shape {x.shape}"
            )
        e = self.embed(x)  # (N, block_size, n_embd)
        return self.out(self.hidden(e.reshape(e.shape[0], -1)).tanh())


class CharLSTM(Module):
    """Embedding -> ``num_layers`` LSTM layers (batch first) -> dropout -> linear logits per
    position. ``(N, T)`` ids -> ``(N, T, vocab_size)``."""

    def __init__(
        self,
        vocab_size: int,
        n_embd: int = 32,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.embed = Embedding(vocab_size, n_embd)
        self.lstm = LSTM(n_embd, hidden_size, num_layers=num_layers, batch_first=True)
        self.drop = Dropout(dropout)
        self.out = Linear(hidden_size, vocab_size)

    def forward(self, x):
        _ids("CharLSTM", x, 2, "(N, T)")
        return self.out(self.drop(self.lstm(self.embed(x))[0]))


class CharTransformer(Module):
    """A small GPT: token embedding + learned positions -> ``n_layer`` pre-norm causal blocks
    -> LayerNorm -> linear logits. ``(N, T)`` ids with ``T <= block_size`` -> ``(N, T,
    vocab_size)``; position ``t`` attends to positions ``<= t`` only."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 16,
        n_embd: int = 64,
        n_head: int = 4,
        n_layer: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.block_size = block_size
        self.embed = Embedding(vocab_size, n_embd)
        self.pos = LearnedPositionalEmbedding(block_size, n_embd)
        self.blocks = ModuleList(
            CausalSelfAttentionBlock(n_embd, n_head, dropout=dropout) for _ in range(n_layer)
        )
        self.ln_f = LayerNorm(n_embd)
        self.out = Linear(n_embd, vocab_size)

    def forward(self, x):
        _ids("CharTransformer", x, 2, "(N, T)")
        h = self.pos(self.embed(x))
        for block in self.blocks:
            h = block(h)
        return self.out(self.ln_f(h))


# NOTE: the image zoo's MODELS stays image-only (``tinydl train --model`` reads it); these are
# keyed by the names ``examples/char_lm.py --model`` takes.
CHAR_MODELS = {"mlp": CharMLP, "lstm": CharLSTM, "transformer": CharTransformer}
