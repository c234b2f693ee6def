"""Op-table entries: the fused LSTM step, the LSTM and GRU sequence loops (one per output)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import tinydl.functional as F
from tests.hardening.op_strategies import Case, Op, array, elems

ENTRIES: list[Op] = []


@st.composite
def _lstm_case(draw):
    lead = draw(st.sampled_from([(), (1,), (2,), (2, 3)]))
    hidden = draw(st.integers(1, 3))
    gates = draw(array(lead + (4 * hidden,), elems(-4, 4)))
    return Case((gates, draw(array(lead + (hidden,)))))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _lstm_ref(gates, c):
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


ENTRIES.extend(
    Op("lstm_pointwise", lambda g, c, k=k: F.lstm_pointwise(g, c)[k],
       lambda g, c, k=k: _lstm_ref(g, c)[k], _lstm_case(), variant=name)
    for k, name in enumerate(("h", "c"))
)  # fmt: skip


@st.composite
def _sequence_case(draw):
    seq, batch, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    shapes = [(seq, batch, 4 * hidden), (batch, hidden), (batch, hidden), (4 * hidden, hidden)]
    arrays = tuple(draw(array(s, elems(-2, 2))) for s in shapes)
    valid = np.array(draw(st.lists(st.booleans(), min_size=seq * batch, max_size=seq * batch)))
    kw = {"valid": valid.reshape(seq, batch, 1) if draw(st.booleans()) else None,
          "reverse": draw(st.booleans())}  # fmt: skip
    return Case(arrays, kw)


def _sequence_ref(gi, h, c, w, valid, reverse):
    out = np.zeros(gi.shape[:2] + (h.shape[-1],))
    for t in reversed(range(len(gi))) if reverse else range(len(gi)):
        h_new, c_new = _lstm_ref(gi[t] + h @ w.T, c)
        keep = np.ones_like(h, bool) if valid is None else valid[t]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        out[t] = np.where(keep, h_new, 0)
    return out, h, c


ENTRIES.extend(
    Op("lstm_sequence", lambda *a, k=k, **kw: F.lstm_sequence(*a, **kw)[k],
       lambda *a, k=k, **kw: _sequence_ref(*a, **kw)[k], _sequence_case(), variant=name)
    for k, name in enumerate(("output", "h_n", "c_n"))
)  # fmt: skip


@st.composite
def _gru_case(draw):
    seq, batch, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    shapes = [(seq, batch, 3 * hidden), (batch, hidden), (3 * hidden, hidden), (3 * hidden,)]
    arrays = tuple(draw(array(s, elems(-2, 2))) for s in shapes)
    valid = np.array(draw(st.lists(st.booleans(), min_size=seq * batch, max_size=seq * batch)))
    kw = {"valid": valid.reshape(seq, batch, 1) if draw(st.booleans()) else None,
          "reverse": draw(st.booleans())}  # fmt: skip
    return Case(arrays if draw(st.booleans()) else arrays[:3], kw)  # with b_hh or without


def _gru_ref(gi, h, w, b=None, valid=None, reverse=False):
    out = np.zeros(gi.shape[:2] + (h.shape[-1],))
    for t in reversed(range(len(gi))) if reverse else range(len(gi)):
        gh = h @ w.T if b is None else h @ w.T + b
        (i_r, i_z, i_n), (h_r, h_z, h_n) = np.split(gi[t], 3, -1), np.split(gh, 3, -1)
        r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        keep = np.ones_like(h, bool) if valid is None else valid[t]
        h = np.where(keep, (1 - z) * n + z * h, h)
        out[t] = np.where(keep, h, 0)
    return out, h


ENTRIES.extend(
    Op("gru_sequence", lambda *a, k=k, **kw: F.gru_sequence(*a, **kw)[k],
       lambda *a, k=k, **kw: _gru_ref(*a, **kw)[k], _gru_case(), variant=name)
    for k, name in enumerate(("output", "h_n"))
)  # fmt: skip
