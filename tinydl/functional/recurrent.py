"""The LSTM cell's pointwise step as one op: gate activations and the new cell and hidden state.

It exists for speed only (one op instead of eleven per time step, and a backward on plain
arrays); ``lstm_pointwise_reference`` composes the same step of primitives and the tests
compare the two.
"""

from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..errors import ShapeError
from ..grad_mode import is_grad_enabled
from .elementwise import sigmoid, tanh
from .shape import cat, chunk

__all__ = ["lstm_pointwise"]


def _activations(gates: Tensor) -> tuple:
    i, f, g, o = chunk(gates, 4, dim=-1)
    return sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)


def lstm_pointwise_reference(gates: Tensor, c: Tensor) -> tuple:
    """The composed twin of ``lstm_pointwise``."""
    i, f, g, o = _activations(gates)
    c = f * c + i * g
    return o * tanh(c), c


class LSTMPointwise(Function):
    @staticmethod
    def forward(ctx, gates, c):
        xp = get_array_module(gates, c)
        n, half = c.shape[-1], gates.dtype.type(0.5)
        # NOTE: sigmoid(x) = (1 + tanh(x / 2)) / 2: one ufunc, and no overflow for any x.
        i_f = xp.tanh(gates[..., : 2 * n] * half) * half + half
        i, f = i_f[..., :n], i_f[..., n:]
        g = xp.tanh(gates[..., 2 * n : 3 * n])
        o = xp.tanh(gates[..., 3 * n :] * half) * half + half
        c_new = f * c + i * g
        tc = xp.tanh(c_new)
        ctx.save_for_backward(gates, c, i, f, g, o, tc)
        return o * tc, c_new

    @staticmethod
    def backward(ctx, gh, gc):
        gates, c, i, f, g, o, tc = ctx.saved_tensors
        if is_grad_enabled():  # create_graph: activations rebuilt from ops, differentiable again
            i, f, g, o = _activations(gates)
            tc = tanh(f * c + i * g)
            join = cat
        else:  # NOTE: plain arrays: a dozen array expressions, not forty recorded ops
            gh, gc, c, i, f, g, o, tc = (t.data for t in (gh, gc, c, i, f, g, o, tc))
            join = get_array_module(c).concatenate
        gct = gc + gh * o * (1 - tc * tc)  # the gradient reaching the new cell state
        dgates = join(
            [gct * g * i * (1 - i), gct * c * f * (1 - f), gct * i * (1 - g * g),
             gh * tc * o * (1 - o)], -1,
        )  # fmt: skip
        return dgates, (gct * f if ctx.needs_input_grad[1] else None)


def lstm_pointwise(gates: Tensor, c: Tensor) -> tuple:
    """One LSTM step after the matmuls: ``gates`` ``(*, 4H)`` are the pre-activations in
    PyTorch's order i, f, g, o, ``c`` ``(*, H)`` the cell state. Returns ``(h', c')`` with
    ``c' = s(f) c + s(i) tanh(g)`` and ``h' = s(o) tanh(c')``."""
    if c.ndim == 0 or gates.shape != c.shape[:-1] + (4 * c.shape[-1],):
        raise ShapeError(
            f"lstm_pointwise: gates must have shape (*, 4H) for c of shape (*, H), got gates "
            f"{gates.shape} and c {c.shape}"
        )
    return LSTMPointwise.apply(gates, c)
