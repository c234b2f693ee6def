"""The op table: one entry (or more, one per variant) for every differentiable public op of
``tinydl.functional``. ``test_op_table.py`` runs one test factory over it.

An entry (``op_strategies.Op``) holds the tinydl call, its NumPy/SciPy reference, a hypothesis
strategy for its inputs (domain bounds, kinks kept at a distance, ties avoided), float32
tolerances, whether the op is piecewise (gradient rtol 1e-3 instead of 1e-5) and whether it
supports double backward. The entries live in four modules by topic.
"""

from __future__ import annotations

from tests.hardening import (
    op_table_attention,
    op_table_math,
    op_table_nn,
    op_table_rnn,
    op_table_seq,
    op_table_shape,
)

# Public names of tinydl.functional that have no gradient, and why; everything else needs an entry.
NOT_DIFFERENTIABLE = {
    "argmax": "returns int64 indices; an index has no gradient",
    "argmin": "returns int64 indices; an index has no gradient",
    "one_hot": "maps integer labels to an int64 encoding; integers have no gradient",
}

ENTRIES = (
    op_table_math.ENTRIES
    + op_table_shape.ENTRIES
    + op_table_nn.ENTRIES
    + op_table_seq.ENTRIES
    + op_table_attention.ENTRIES
    + op_table_rnn.ENTRIES
)
COVERED = {op.name for op in ENTRIES}
