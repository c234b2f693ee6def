"""Op-table entries: the fused recurrent-cell step (one entry per output)."""

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
