"""The op table's building blocks: the ``Op`` entry, the ``Case`` its strategy draws, and
hypothesis strategies for shapes, dims and elements with domain bounds and kinks kept at a
distance.

Every element is a float32 number (held in float64), so the float32 and float64 runs of an op
see exactly the same inputs. Elements near a kink are pushed ``MARGIN`` away from it, and
"grid" elements are multiples of ``MARGIN``: both stay far beyond the finite-difference step
(1e-6), so central differences never straddle a kink or a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

MARGIN = 1 / 64
LARGE_SHAPES = [(70,), (5, 14), (3, 4, 6), (2, 3, 3, 4)]  # over 64 elements: directional check


@dataclass(frozen=True)
class Case:
    """What one hypothesis example hands an op: the differentiable float64 arrays (positional)
    and the fixed arguments (dims, integer targets, masks, ...)."""

    arrays: tuple
    kw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Op:
    """One op-table entry."""

    name: str  # the public name in tinydl.functional
    fn: object  # fn(*tensors, **kw) -> Tensor
    ref: object  # ref(*float64 arrays, **kw) -> array
    case: object  # strategy of Case
    variant: str = ""
    kinks: bool = False  # piecewise: gradient rtol 1e-3 (inputs kept MARGIN from the kinks)
    double_backward: bool = True
    f32: tuple = (2e-5, 2e-5)  # float32 forward: (rtol, atol relative to the output's scale)
    f32_grad: tuple = (2e-4, 2e-4)  # float32 gradients against the float64 ones
    # For ops whose values come from the device's random numbers: device_ref(backend) gives the
    # reference there (``ref`` stays the CPU's).
    device_ref: object = None

    @property
    def id(self) -> str:
        return f"{self.name}[{self.variant}]" if self.variant else self.name


def kw(**strategies):
    """Fixed (non-differentiable) arguments drawn from strategies."""
    return st.fixed_dictionaries(strategies)


REDUCTION = st.sampled_from(["none", "mean", "sum"])


def _bounds32(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]`` with both ends rounded inwards to float32."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    lo32 = lo32 if lo32 >= lo else np.nextafter(lo32, np.float32(np.inf))
    hi32 = hi32 if hi32 <= hi else np.nextafter(hi32, np.float32(-np.inf))
    return float(lo32), float(hi32)


def floats(lo: float, hi: float):
    """float32 numbers in ``[lo, hi]`` (a plain strategy, for scalar arguments)."""
    return st.floats(*_bounds32(lo, hi), width=32, allow_subnormal=False)


@dataclass(frozen=True)
class Elements:
    """An element distribution twice: a hypothesis strategy, drawn element by element for small
    arrays (they shrink well), and a NumPy sampler for large ones (one seed instead of a draw
    per element keeps hypothesis's own time small)."""

    strategy: st.SearchStrategy
    sample: object  # sample(rng, n) -> float64 array of n elements
    values: np.ndarray | None = None  # the finite set of values (unique draws pick from it)


def _away(x, kinks):
    """Push elements closer than ``MARGIN`` to a kink out to ``MARGIN`` (scalars or arrays)."""
    x = np.asarray(x, np.float64)
    for k in kinks:
        x = np.where(np.abs(x - k) < MARGIN, k + np.where(x >= k, MARGIN, -MARGIN), x)
    return x


def elems(lo: float = -3.0, hi: float = 3.0, kinks=()) -> Elements:
    """float32 numbers in ``[lo, hi]``, at least ``MARGIN`` from every kink."""
    lo32, hi32 = _bounds32(lo, hi)
    strategy = floats(lo, hi)
    if kinks:
        strategy = strategy.map(lambda x: float(_away(x, kinks)))

    def sample(rng, n):
        x = rng.uniform(lo32, hi32, n).astype(np.float32).astype(np.float64)
        return _away(np.clip(x, lo32, hi32), kinks)

    return Elements(strategy, sample)


def choice(values) -> Elements:
    values = np.asarray(values, np.float64)
    return Elements(st.sampled_from(values.tolist()), lambda rng, n: rng.choice(values, n), values)


def grid(lo: float = -3.0, hi: float = 3.0, offset: float = 0.0, nonzero=False) -> Elements:
    """Multiples of ``MARGIN`` in ``[lo, hi]`` (plus ``offset``): distinct ones never tie."""
    ks = np.arange(math.ceil(lo / MARGIN), math.floor(hi / MARGIN) + 1)
    if nonzero:
        ks = ks[ks != 0]
    return choice(ks * MARGIN + offset)


def signed(lo: float, hi: float) -> Elements:
    """``+-[lo, hi]``: magnitudes bounded away from zero."""
    magnitude = elems(lo, hi)
    strategy = st.tuples(magnitude.strategy, st.booleans()).map(lambda t: t[0] if t[1] else -t[0])
    return Elements(strategy, lambda rng, n: magnitude.sample(rng, n) * rng.choice([-1, 1], n))


BOOLS = choice([0.0, 1.0])


def ints(lo: int, hi: int) -> Elements:
    return choice(np.arange(lo, hi + 1))


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4, large=True):
    """Small shapes (at most 64 elements: full finite-difference gradient) and, when ``large``,
    a few over 64 elements (directional check)."""
    small = hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )
    big = [s for s in LARGE_SHAPES if min_dims <= len(s) <= max_dims and min(s) >= min_side]
    return st.one_of(small, st.sampled_from(big)) if large and big else small


SMALL_ARRAY = 12  # up to this many elements hypothesis draws each one


@st.composite
def array(draw, shape, elements: Elements | None = None, unique=False):
    """A float64 array of ``shape`` with ``elements`` (default ``elems()``)."""
    el = elems() if elements is None else elements
    n = math.prod(shape)
    if n <= SMALL_ARRAY:
        return draw(hnp.arrays(np.float64, shape, elements=el.strategy, unique=unique))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="array seed"))
    if unique:
        assert el.values is not None and len(el.values) >= n, "unique needs enough values"
        return rng.choice(el.values, n, replace=False).reshape(shape)
    return np.asarray(el.sample(rng, n), np.float64).reshape(shape)


@st.composite
def dims(draw, ndim: int, none=True, tuples=True):
    """A ``dim`` argument: None, an int (maybe negative) or a tuple of distinct dims."""
    if ndim == 0:
        return draw(st.sampled_from([None, 0, -1] if none else [0, -1]))
    options = [st.integers(-ndim, ndim - 1)]
    if none:
        options.append(st.none())
    if tuples:
        options.append(
            st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
        )
    return draw(st.one_of(options))


@st.composite
def unary(draw, elements=None, shape=None, unique=False, kw=None):
    s = draw(shape if shape is not None else shapes())
    x = draw(array(s, elements, unique))
    return Case((x,), draw(kw) if kw is not None else {})


@st.composite
def broadcast(draw, *elements):
    """Arrays of mutually broadcastable shapes, one per element strategy."""
    n = len(elements)
    small = hnp.mutually_broadcastable_shapes(num_shapes=n, max_dims=3, max_side=4)
    if n == 2:
        big = st.sampled_from([((5, 14), (14,)), ((3, 1, 6), (4, 1)), ((70,), ())])
        shape_list = draw(st.one_of(small.map(lambda r: r.input_shapes), big))
    else:
        shape_list = draw(small).input_shapes
    return Case(tuple(draw(array(s, e)) for s, e in zip(shape_list, elements)))


def distinct_pair(same_shape=True):
    """``(a, b)`` with ``|a - b| >= MARGIN`` everywhere: maximum/minimum never tie."""

    @st.composite
    def build(draw):
        s = draw(shapes())
        a = draw(array(s, grid()))
        if same_shape:
            delta = draw(array(s, grid(-2, 2, nonzero=True)))
            return Case((a, a + delta))
        return Case((a, np.asarray(draw(grid(-3, 3, offset=MARGIN / 2).strategy))))

    return build()
