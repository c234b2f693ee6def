"""RNN, LSTM and GRU: multi-layer, optionally bidirectional sequence layers.

PyTorch's parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), gate order, shapes and
initialisation. The input projection of all time steps is one GEMM up front, then one GEMM per
step for the hidden projection (gates fused): RNN loops over time in Python, LSTM and GRU inside
one fused op per layer and direction (``F.lstm_sequence``, ``F.gru_sequence``). Variable lengths
without packing: ``lengths`` (per batch element) or a boolean ``mask`` of shape (batch, seq).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_array_module, to_numpy
from ..errors import DTypeError, ShapeError
from ..tensor import zeros
from .module import Module
from .recurrent_cells import MODES, check_sizes, make_weights, rnn_mode, state_shape_error

__all__ = ["RNN", "LSTM", "GRU"]


def _run_direction(step, gi, state, w_hh, b_hh, valid, reverse):
    """One RNN layer, one direction (LSTM and GRU run fused ops instead). ``gi`` (T, B, H) ->
    (outputs (T, B, H), final state).

    Where ``valid[t]`` is False a batch element skips step t: its state stays as it was and its
    output is zero. Past an element's length that freezes the final state at its last valid step;
    going backwards, it starts the reverse direction there."""
    steps = [g.squeeze(0) for g in F.split(gi, 1, dim=0)]
    outs = [None] * len(steps)
    for t in reversed(range(len(steps))) if reverse else range(len(steps)):
        h = step(steps[t], state, w_hh, b_hh)
        if valid is not None:
            h = F.where(valid[t], h, state)
            outs[t] = F.where(valid[t], h, 0)
        else:
            outs[t] = h
        state = h
    return F.stack(outs, 0), state


class _RNNBase(Module):
    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        check_sizes(name, input_size, hidden_size)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        gates = MODES[mode][0]
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self._dirs
            for suffix in self._suffixes:
                make_weights(self, f"_l{layer}{suffix}", gates, size, hidden_size, bias, dtype)

    @property
    def _dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self) -> tuple:
        return ("", "_reverse") if self.bidirectional else ("",)

    def _weights(self, layer: int, suffix: str) -> tuple:
        key = f"_l{layer}{suffix}"
        return tuple(
            getattr(self, n + key) for n in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        )

    # -- argument checks -------------------------------------------------------------------
    def _check_input(self, x):
        name = type(self).__name__
        layout = "(batch, seq, features)" if self.batch_first else "(seq, batch, features)"
        if not isinstance(x, Tensor) or x.ndim not in (2, 3):
            raise ShapeError(
                f"{name}: input must be 3-D {layout} or 2-D unbatched (seq, features), got "
                f"shape {getattr(x, 'shape', type(x).__name__)}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}: input has {x.shape[-1]} features (shape {x.shape}) but input_size is "
                f"{self.input_size}"
            )

    def _initial_state(self, x, hx, batch: int, unbatched: bool):
        """hx as a list (one per layer and direction) of states (B, H) or (h, c) pairs."""
        name, pair = type(self).__name__, MODES[self.mode][2]
        n = self.num_layers * self._dirs
        shape = (n, self.hidden_size) if unbatched else (n, batch, self.hidden_size)
        if hx is None:
            h = zeros(n, batch, self.hidden_size, dtype=x.dtype, device=x.device)
            parts = (h, h) if pair else (h,)
        else:
            if pair and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"{name}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
            parts = tuple(hx) if pair else (hx,)
            for label, t in zip(("h_0", "c_0"), parts):
                if t.shape != shape:
                    raise state_shape_error(name, f"hx ({label})", shape, t.shape)
            if unbatched:
                parts = tuple(t.unsqueeze(1) for t in parts)
        per_layer = [tuple(F.split(t, 1, dim=0)) if n > 1 else (t,) for t in parts]
        states = [tuple(p[k].squeeze(0) for p in per_layer) for k in range(n)]
        return [s if pair else s[0] for s in states]

    def _valid_steps(self, x, lengths, mask, seq: int, batch: int):
        """A bool array (seq, batch, 1) on x's device, or None when every step is valid."""
        name = type(self).__name__
        valid = None
        if lengths is not None:
            lens = np.asarray(to_numpy(lengths.data) if isinstance(lengths, Tensor) else lengths)
            if lens.dtype.kind not in "iu":
                raise DTypeError(f"{name}: lengths must be integers, got dtype {lens.dtype}")
            if lens.shape != (batch,):
                raise ShapeError(
                    f"{name}: lengths must be 1-D with one entry per batch element ({batch},), "
                    f"got shape {lens.shape}"
                )
            if lens.size and (lens.min() < 0 or lens.max() > seq):
                raise ValueError(
                    f"{name}: lengths must lie in [0, {seq}] (the sequence length), got "
                    f"min {lens.min()}, max {lens.max()}"
                )
            valid = np.arange(seq)[:, None] < lens[None, :]
        if mask is not None:
            m = np.asarray(to_numpy(mask.data) if isinstance(mask, Tensor) else mask)
            if m.dtype != np.bool_:
                raise DTypeError(f"{name}: mask must be a bool array, got dtype {m.dtype}")
            if m.shape != (batch, seq):
                raise ShapeError(
                    f"{name}: mask must have shape (batch, seq) = {(batch, seq)}, got {m.shape}"
                )
            if valid is not None and not np.array_equal(valid, m.T):
                raise ValueError(f"{name}: lengths and mask disagree; pass one of them")
            valid = m.T
        if valid is None or valid.all():
            return None
        return get_array_module(x.data).asarray(valid[:, :, None])

    # -- forward ---------------------------------------------------------------------------
    def forward(self, input, hx=None, lengths=None, mask=None):
        """input ``(seq, batch, input_size)`` (``(batch, seq, ...)`` with ``batch_first``) or
        unbatched ``(seq, input_size)``. Returns ``(output, h_n)`` (LSTM: ``(output, (h_n,
        c_n))``) with output ``(seq, batch, D * hidden_size)`` and h_n ``(num_layers * D, batch,
        hidden_size)``, D = 2 if bidirectional. With ``lengths`` or ``mask`` an element's outputs
        past its length are zero and its h_n/c_n are those of its last valid step."""
        self._check_input(input)
        unbatched = input.ndim == 2
        if unbatched and (lengths is not None or mask is not None):
            raise ValueError(
                f"{type(self).__name__}: lengths and mask need batched input; add a batch dimension"
            )
        x = input.unsqueeze(1) if unbatched else input
        x = x.transpose(0, 1) if self.batch_first and not unbatched else x
        seq, batch = x.shape[0], x.shape[1]
        valid = self._valid_steps(x, lengths, mask, seq, batch)
        states = self._initial_state(x, hx, batch, unbatched)
        _, step, pair = MODES[self.mode]
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes):
                w_ih, b_ih, w_hh, b_hh = self._weights(layer, suffix)
                if b_hh is not None and self.mode != "GRU":
                    # NOTE: b_hh is added once here, not at every step (GRU's b_hn sits inside
                    # r * (W_hn h + b_hn), so GRU keeps it in the step).
                    b_ih, b_hh = b_ih + b_hh, None
                gi = F.linear(x, w_ih, b_ih)  # every time step in one GEMM
                state = states[layer * self._dirs + d]
                if self.mode == "LSTM":  # the fused loops (LSTM's b_hh is in gi)
                    out, *state = F.lstm_sequence(gi, *state, w_hh, valid, d == 1)
                elif self.mode == "GRU":
                    out, state = F.gru_sequence(gi, state, w_hh, b_hh, valid, d == 1)
                else:
                    out, state = _run_direction(step, gi, state, w_hh, b_hh, valid, d == 1)
                outs.append(out)
                finals.append(state)
            x = outs[0] if len(outs) == 1 else F.cat(outs, dim=-1)
            if self.dropout and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=self.training)
        output = x.squeeze(1) if unbatched else x
        output = output.transpose(0, 1) if self.batch_first and not unbatched else output
        if pair:
            h_n = self._stack_finals([s[0] for s in finals], unbatched)
            return output, (h_n, self._stack_finals([s[1] for s in finals], unbatched))
        return output, self._stack_finals(finals, unbatched)

    @staticmethod
    def _stack_finals(finals, unbatched):
        h = F.stack(finals, 0)
        return h.squeeze(1) if unbatched else h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for key, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                             ("bidirectional", False)):  # fmt: skip
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        return s


class RNN(_RNNBase):
    """Elman RNN, ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or relu), stacked
    ``num_layers`` deep. See ``forward`` for shapes, ``lengths`` and ``mask``."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=None):  # fmt: skip
        mode = rnn_mode(nonlinearity, "RNN")
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype)  # fmt: skip
        self.nonlinearity = nonlinearity


class LSTM(_RNNBase):
    """LSTM with gates i, f, g, o; ``hx`` and the final state are pairs ``(h, c)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None):  # fmt: skip
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype)  # fmt: skip


class GRU(_RNNBase):
    """GRU with gates r, z, n, ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None):  # fmt: skip
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype)  # fmt: skip
