"""RNNCell, LSTMCell, GRUCell and the one-step math that the sequence layers share.

A step takes ``gi``, the input projection ``x @ W_ih.T + b_ih`` (the caller computes it; the
sequence layers do it for every time step in one GEMM), and the previous state, and makes one
GEMM for the hidden projection with all the gates fused: ``h @ W_hh.T + b_hh``, of width
``gates * hidden``. Gate order, formulas and initialisation are PyTorch's, so its state dicts load
one to one. Everything is composed of differentiable ops: gradients of any order come from the
engine.
"""

from __future__ import annotations

import math

from .. import functional as F
from ..errors import ShapeError
from ..tensor import Parameter, empty, zeros
from . import init
from .module import Module

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


def rnn_tanh_step(gi, h, w_hh, b_hh):
    return F.tanh(gi + F.linear(h, w_hh, b_hh))


def rnn_relu_step(gi, h, w_hh, b_hh):
    return F.relu(gi + F.linear(h, w_hh, b_hh))


def lstm_step(gi, state, w_hh, b_hh):
    """Gates i, f, g, o: ``c' = s(f) c + s(i) tanh(g)``, ``h' = s(o) tanh(c')``."""
    h, c = state
    return F.lstm_pointwise(gi + F.linear(h, w_hh, b_hh), c)


def gru_step(gi, h, w_hh, b_hh):
    """Gates r, z, n: ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``."""
    i_r, i_z, i_n = F.chunk(gi, 3, dim=-1)
    h_r, h_z, h_n = F.chunk(F.linear(h, w_hh, b_hh), 3, dim=-1)
    r = F.sigmoid(i_r + h_r)
    z = F.sigmoid(i_z + h_z)
    n = F.tanh(i_n + r * h_n)
    return n + z * (h - n)


# mode -> (number of gates, step, whether the state is an (h, c) pair)
MODES = {
    "RNN_TANH": (1, rnn_tanh_step, False),
    "RNN_RELU": (1, rnn_relu_step, False),
    "LSTM": (4, lstm_step, True),
    "GRU": (3, gru_step, False),
}


def rnn_mode(nonlinearity: str, owner: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{owner}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


def check_sizes(owner: str, input_size: int, hidden_size: int) -> None:
    if input_size <= 0 or hidden_size <= 0:
        raise ValueError(
            f"{owner}: input_size and hidden_size must be positive, got ({input_size}, "
            f"{hidden_size})"
        )


def make_weights(module, suffix, gates, input_size, hidden_size, bias, dtype) -> None:
    """Register ``weight_ih{suffix}``, ``weight_hh{suffix}`` (and the biases), drawn as PyTorch
    draws them: U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    k = 1.0 / math.sqrt(hidden_size)
    shapes = {"weight_ih": (gates * hidden_size, input_size),
              "weight_hh": (gates * hidden_size, hidden_size)}  # fmt: skip
    if bias:
        shapes.update(bias_ih=(gates * hidden_size,), bias_hh=(gates * hidden_size,))
    for name, shape in shapes.items():
        p = Parameter(empty(*shape, dtype=dtype))
        init.uniform_(p, -k, k)
        setattr(module, name + suffix, p)
    if not bias:
        setattr(module, "bias_ih" + suffix, None)
        setattr(module, "bias_hh" + suffix, None)


def state_shape_error(owner: str, name: str, expected: tuple, got: tuple) -> ShapeError:
    return ShapeError(f"{owner}: {name} must have shape {expected}, got {got}")


class _Cell(Module):
    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=None, mode=None):
        super().__init__()
        self._mode = mode or self._mode
        check_sizes(type(self).__name__, input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates = MODES[self._mode][0]
        make_weights(self, "", gates, input_size, hidden_size, bias, dtype)

    def _state(self, x, hx, batch: tuple):
        """The state as the step wants it: zeros when ``hx`` is None, else checked."""
        name, pair = type(self).__name__, MODES[self._mode][2]
        shape = batch + (self.hidden_size,)
        if hx is None:
            h = zeros(*shape, dtype=x.dtype, device=x.device)
            return (h, h) if pair else h
        parts = hx if pair else (hx,)
        if pair and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"{name}: hx must be a pair (h, c) of tensors, got {type(hx).__name__}")
        for label, t in zip(("hx[0] (h)", "hx[1] (c)") if pair else ("hx",), parts):
            if t.shape != shape:
                raise state_shape_error(name, label, shape, t.shape)
        return tuple(parts) if pair else hx

    def forward(self, input, hx=None):
        name = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}: input must be (batch, {self.input_size}) or ({self.input_size},) "
                f"(input_size={self.input_size}), got shape {input.shape}"
            )
        state = self._state(input, hx, input.shape[:-1])
        gi = F.linear(input, self.weight_ih, self.bias_ih)
        return MODES[self._mode][1](gi, state, self.weight_hh, self.bias_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(_Cell):
    """``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu). ``forward(input, hx=None)``:
    input ``(batch, input_size)`` or ``(input_size,)``, hx like it with ``hidden_size`` (zeros by
    default) -> ``h'``."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None):
        super().__init__(input_size, hidden_size, bias, dtype, rnn_mode(nonlinearity, "RNNCell"))
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(_Cell):
    """One LSTM step, gates i, f, g, o. ``forward(input, hx=None)`` with ``hx = (h, c)`` ->
    ``(h', c')``; shapes as ``RNNCell``."""

    _mode = "LSTM"


class GRUCell(_Cell):
    """One GRU step, gates r, z, n (PyTorch's formula, ``r`` applied to ``W_hn h + b_hn``).
    ``forward(input, hx=None)`` -> ``h'``; shapes as ``RNNCell``."""

    _mode = "GRU"
