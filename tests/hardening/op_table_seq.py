"""Op-table entries for the sequence ops: einsum (one entry per kind of subscripts) and
embedding."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

import tinydl.functional as F
from tests.hardening.op_strategies import Case, Op, array, ints

ENTRIES: list[Op] = []

_side = st.integers(1, 4)


def _einsum(*tensors, subscripts):
    return F.einsum(subscripts, *tensors)


def _einsum_ref(*arrays, subscripts):
    return np.einsum(subscripts, *arrays)


@st.composite
def _subscripts(draw, kind):
    """A Case for einsum: subscripts of one kind and operands whose shapes fit them."""
    n = {c: draw(_side) for c in "abijkl"}
    if kind == "matmul":
        spec, shapes = "ij,jk->ik", [(n["i"], n["j"]), (n["j"], n["k"])]
    elif kind == "batched ellipsis":
        batch = tuple(draw(st.lists(_side, max_size=2)))
        spec, shapes = "...ij,...jk->...ik", [batch + (n["i"], n["j"]), batch + (n["j"], n["k"])]
    elif kind == "outer":
        spec, shapes = "i,j->ij", [(n["i"],), (n["j"],)]
    elif kind == "repeated index":
        spec = draw(st.sampled_from(["ii->", "ii->i", "iij->j", "iji->ij", "ii,i->i"]))
        shapes = [tuple(n[c] for c in term) for term in spec.split("->")[0].split(",")]
    elif kind == "implicit output":
        spec = draw(st.sampled_from(["ij,jk", "ba", "ij,ij", "i,i", "bij,bkj", "i...,ij"]))
        ell = tuple(draw(st.lists(_side, max_size=2)))
        shapes = [
            tuple(d for c in term.replace("...", "E") for d in (ell if c == "E" else (n[c],)))
            for term in spec.split(",")
        ]
    elif kind == "broadcast ellipsis":
        spec = draw(st.sampled_from(["...i,...i->...i", "...ij,...jk->...ik", "i...,i...->..."]))
        lead = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
        terms = spec.split("->")[0].split(",")
        shapes = [
            tuple(d for c in t.replace("...", "E") for d in (e if c == "E" else (n[c],)))
            for t, e in zip(terms, lead.input_shapes)
        ]
    else:  # three operands
        spec = draw(st.sampled_from(["ij,jk,kl->il", "bi,bj,bk->ijk", "i,ij,j->"]))
        shapes = [tuple(n[c] for c in term) for term in spec.split("->")[0].split(",")]
    return Case(tuple(draw(array(s)) for s in shapes), {"subscripts": spec})


ENTRIES += [
    Op("einsum", _einsum, _einsum_ref, _subscripts(kind), variant=kind)
    for kind in (
        "matmul",
        "batched ellipsis",
        "outer",
        "repeated index",
        "implicit output",
        "broadcast ellipsis",
        "three operands",
    )
]


@st.composite
def _embedding(draw):
    rows, dim = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=4))
    index = draw(array(shape, ints(0, rows - 1))).astype(np.int64)
    # NOTE: the padding row gets a zero gradient by definition, not by calculus, so the
    # central differences agree only when it is not looked up (test_embedding.py checks it).
    unused = sorted(set(range(rows)) - set(index.ravel().tolist()))
    padding = draw(st.sampled_from([None, *unused]))
    return Case((draw(array((rows, dim))),), {"index": index, "padding_idx": padding})


def _embedding_fn(weight, index, padding_idx):
    return F.embedding(index, weight, padding_idx)


def _embedding_ref(weight, index, padding_idx):
    return weight[index]


ENTRIES.append(Op("embedding", _embedding_fn, _embedding_ref, _embedding()))
