"""Reference for ``numba_dropout``: dropout's mask from a counter-based hash, in NumPy.

Element ``i`` of a flat array is kept when ``hash(i) >= threshold``, where ``hash`` is two
rounds of Wellons' ``lowbias32`` mixer keyed by ``key = (k0, k1)``:
``mix(mix(i ^ k0) ^ k1)`` on uint32, the index taken modulo 2**32 and ``k0`` advanced by
``0x9E3779B9`` for each further block of 2**32 elements. ``threshold = round(p * 2**32)``, so
an element is dropped with probability ``p`` (to 2**-32). The mask is a function of the index:
the backward recomputes it instead of keeping it, and any split of the array across threads
draws the same mask.

Array-module generic (NumPy or CuPy); the oracle the tests compare the Numba loop with, and the
path of every array that loop does not take (integers, float16, the ``"numpy"`` kernels).
"""

from __future__ import annotations

import numpy as np

from ..device import get_array_module

__all__ = ["threshold", "keep_mask", "dropout_apply", "BLOCK", "block_key"]

BLOCK = 1 << 32  # elements per key: the uint32 counter wraps after this many
_GOLDEN = 0x9E3779B9


def threshold(p: float) -> int:
    """The uint32 threshold of drop probability ``p`` in ``(0, 1)``."""
    return min(int(round(p * 2.0**32)), 2**32 - 1)


def block_key(key, block: int) -> tuple[int, int]:
    """``(k0, k1)`` of the ``block``-th run of ``BLOCK`` elements."""
    return (int(key[0]) + block * _GOLDEN) % 2**32, int(key[1])


def _mix(h, xp):
    h = h ^ (h >> xp.uint32(16))
    h = h * xp.uint32(0x7FEB352D)  # uint32 arrays wrap: the products are taken mod 2**32
    h = h ^ (h >> xp.uint32(15))
    h = h * xp.uint32(0x846CA68B)
    return h ^ (h >> xp.uint32(16))


def keep_mask(key, n: int, threshold_: int, xp=np):
    """The boolean keep mask of ``n`` elements (flat) for ``key`` and ``threshold_``."""
    out = xp.empty(n, dtype=bool)
    for start in range(0, n, BLOCK):
        k0, k1 = block_key(key, start // BLOCK)
        i = xp.arange(min(BLOCK, n - start), dtype=xp.uint32)
        h = _mix(_mix(i ^ xp.uint32(k0), xp) ^ xp.uint32(k1), xp)
        out[start : start + len(i)] = h >= xp.uint32(threshold_)
    return out


def dropout_apply(x, key, threshold_: int, scale, out):
    """``x * where(keep, scale, 0)`` into ``out`` (``x``'s shape and dtype; ``scale`` a scalar
    of that dtype). Returns ``out``."""
    xp = get_array_module(x)
    keep = keep_mask(key, x.size, threshold_, xp).reshape(x.shape)
    mask = xp.where(keep, scale, x.dtype.type(0)).astype(x.dtype, copy=False)
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN, meant (as the Numba loop, silently)
        return xp.multiply(x, mask, out=out)
