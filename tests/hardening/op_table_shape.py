"""Op-table entries: shape ops, indexing, matmul and linear."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

import tinydl.functional as F
from tests.hardening import op_refs as R
from tests.hardening.op_strategies import (
    BOOLS,
    Case,
    Op,
    array,
    dims,
    floats,
    shapes,
)

ENTRIES: list[Op] = []


def add(*ops):
    ENTRIES.extend(ops)


# ----------------------------------------------------------------------------- shape


@st.composite
def _reshape(draw):
    s = draw(shapes())
    size = int(np.prod(s))
    target = draw(st.sampled_from([(-1,), tuple(reversed(s)), s + (1,), (1,) + s, (size,)]))
    return Case((draw(array(s)),), {"shape": target})


@st.composite
def _flatten(draw):
    s = draw(shapes())
    n = len(s)
    if n == 0:
        return Case((draw(array(s)),), {})
    a, b = sorted(draw(st.integers(0, n - 1)) for _ in range(2))
    return Case((draw(array(s)),), {"start_dim": a - n * draw(st.booleans()), "end_dim": b})


def _flatten_ref(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return x.reshape(1)
    a, b = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:a] + (-1,) + x.shape[b + 1 :])


@st.composite
def _transpose(draw):
    s = draw(shapes(min_dims=1))
    n = len(s)
    return Case((draw(array(s)),), {"dim0": draw(st.integers(-n, n - 1)),
                                    "dim1": draw(st.integers(-n, n - 1))})  # fmt: skip


@st.composite
def _permute(draw):
    s = draw(shapes())
    perm = draw(st.permutations(range(len(s))))
    return Case((draw(array(s)),), {"dims": tuple(perm)})


@st.composite
def _squeeze(draw):
    s = tuple(draw(st.lists(st.sampled_from([1, 1, 2, 3]), max_size=4)))
    return Case((draw(array(s)),), {"dim": draw(dims(len(s)) if s else st.none())})


def _squeeze_ref(x, dim):
    if dim is None:
        return x.reshape(tuple(n for n in x.shape if n != 1))
    drop = set(R.axes(dim, x.ndim) or ())
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if not (i in drop and n == 1)))


@st.composite
def _unsqueeze(draw):
    s = draw(shapes())
    return Case((draw(array(s)),), {"dim": draw(st.integers(-len(s) - 1, len(s)))})


@st.composite
def _expand(draw, minus_one):
    s = tuple(draw(st.lists(st.sampled_from([1, 1, 2, 3]), max_size=3)))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    sizes = [draw(st.sampled_from([1, 2, 3])) if n == 1 else n for n in s]
    if minus_one:
        sizes = [-1 if n == m and draw(st.booleans()) else m for n, m in zip(s, sizes)]
    return Case((draw(array(s)),), {"shape": lead + tuple(sizes)})


def _expand_ref(x, shape):
    lead = len(shape) - x.ndim
    full = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    return np.broadcast_to(x, full).copy()


@st.composite
def _cat(draw, stack):
    s = draw(shapes(min_dims=0 if stack else 1, max_side=3, large=False))
    k = draw(st.integers(1, 3))
    n = len(s)
    d = draw(st.integers(-n - 1, n) if stack else st.integers(-n, n - 1))
    arrays = []
    for _ in range(k):
        si = list(s)
        if not stack:
            si[d % n] = draw(st.integers(1, 3))
        arrays.append(draw(array(tuple(si))))
    return Case(tuple(arrays), {"dim": d})


@st.composite
def _split(draw, chunk):
    s = draw(shapes(min_dims=1))
    d = draw(st.integers(-len(s), len(s) - 1))
    n = s[d]
    if chunk:
        chunks = draw(st.integers(1, 4))
        size = max(-(-n // chunks), 1)
        spec = chunks
    elif draw(st.booleans()):
        size = spec = draw(st.integers(1, n))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
        spec = [b - a for a, b in zip([0] + cuts, cuts + [n])]
        size = None
    if size is not None:
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = spec
    pick = draw(st.sampled_from(["all"] + list(range(len(sizes)))))
    return Case((draw(array(s)),), {"spec": spec, "dim": d, "pick": pick, "sizes": sizes})


def _split_fn(op):
    def fn(x, spec, dim, pick, sizes):
        pieces = op(x, spec, dim)
        assert [p.shape[dim] for p in pieces] == list(sizes), "piece sizes differ from PyTorch's"
        return F.cat(list(pieces), dim) if pick == "all" else pieces[pick]

    return fn


def _split_ref(x, spec, dim, pick, sizes):
    pieces = np.split(x, np.cumsum(sizes)[:-1], axis=dim)
    return np.concatenate(pieces, axis=dim) if pick == "all" else pieces[pick]


@st.composite
def _pad(draw):
    s = draw(shapes(min_dims=1))
    k = draw(st.integers(1, len(s)))
    pad = tuple(draw(st.lists(st.integers(0, 2), min_size=2 * k, max_size=2 * k)))
    return Case((draw(array(s)),), {"pad": pad, "value": draw(floats(-2, 2))})


def _pad_ref(x, pad, value):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return np.pad(x, widths, constant_values=value)


@st.composite
def _flip(draw):
    s = draw(shapes(min_dims=1))
    return Case((draw(array(s)),), {"dims": draw(dims(len(s), none=False))})


@st.composite
def _repeat(draw):
    s = draw(shapes(max_side=3, large=False))
    k = draw(st.integers(len(s), len(s) + 2))
    return Case((draw(array(s)),), {"sizes": tuple(draw(st.integers(1, 3)) for _ in range(k))})


@st.composite
def _getitem(draw, kind):
    s = draw(shapes(min_dims=0 if kind == "basic" else 1))
    if kind == "basic":
        index = draw(hnp.basic_indices(s, allow_newaxis=True, allow_ellipsis=True))
    elif kind == "integer arrays":
        index = draw(hnp.integer_array_indices(s, result_shape=hnp.array_shapes(max_dims=2)))
    else:
        index = draw(array(s, BOOLS)).astype(bool)
    return Case((draw(array(s)),), {"index": index})


def _cat_fn(*xs, dim):
    return F.cat(list(xs), dim)


def _stack_fn(*xs, dim):
    return F.stack(list(xs), dim)


add(
    Op(
        "reshape",
        lambda x, shape: F.reshape(x, shape),
        lambda x, shape: x.reshape(shape),
        _reshape(),
    ),
    Op("view", lambda x, shape: F.view(x, shape), lambda x, shape: x.reshape(shape), _reshape()),
    Op("flatten", F.flatten, _flatten_ref, _flatten()),
    Op("transpose", F.transpose, lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1), _transpose()),
    Op(
        "permute",
        lambda x, dims: F.permute(x, dims),
        lambda x, dims: np.transpose(x, dims),
        _permute(),
    ),
    Op("squeeze", F.squeeze, _squeeze_ref, _squeeze()),
    Op("unsqueeze", F.unsqueeze, lambda x, dim: np.expand_dims(x, dim), _unsqueeze()),
    Op("expand", lambda x, shape: F.expand(x, shape), _expand_ref, _expand(True)),
    Op("broadcast_to", F.broadcast_to, _expand_ref, _expand(False)),
    Op("cat", _cat_fn, lambda *xs, dim: np.concatenate(xs, axis=dim), _cat(False)),
    Op("stack", _stack_fn, lambda *xs, dim: np.stack(xs, axis=dim), _cat(True)),
    Op("split", _split_fn(F.split), _split_ref, _split(False)),
    Op("chunk", _split_fn(F.chunk), _split_ref, _split(True)),
    Op("pad", F.pad, _pad_ref, _pad()),
    Op("flip", F.flip, lambda x, dims: np.flip(x, dims), _flip()),
    Op(
        "repeat", lambda x, sizes: F.repeat(x, sizes), lambda x, sizes: np.tile(x, sizes), _repeat()
    ),  # fmt: skip
)
for _kind in ("basic", "integer arrays", "bool mask"):
    add(Op("getitem", F.getitem, lambda x, index: x[index], _getitem(_kind), variant=_kind))

# ----------------------------------------------------------------------------- linear algebra


@st.composite
def _matmul(draw):
    n, k, m, b = (draw(st.integers(1, 4)) for _ in range(4))
    pairs = {
        "mm": ((n, k), (k, m)),
        "batched": ((b, n, k), (k, m)),
        "broadcast batch": ((b, 1, n, k), (2, k, m)),
        "vector-matrix": ((k,), (b, k, m)),
        "matrix-vector": ((b, n, k), (k,)),
        "dot": ((k,), (k,)),
        "large": ((5, 14), (14, 6)),
    }
    sa, sb = pairs[draw(st.sampled_from(sorted(pairs)))]
    return Case((draw(array(sa)), draw(array(sb))))


@st.composite
def _linear(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    arrays = [draw(array(lead + (n_in,))), draw(array((n_out, n_in)))]
    if draw(st.booleans()):
        arrays.append(draw(array((n_out,))))
    return Case(tuple(arrays))


def _linear_ref(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


add(
    Op("matmul", F.matmul, np.matmul, _matmul()),
    Op("linear", F.linear, _linear_ref, _linear()),
)
