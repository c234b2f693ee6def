"""Dropout with an explicit training flag and generator."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..backend import uniform
from ..tensor import default_generator

__all__ = ["dropout"]


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``, so the expectation is unchanged. Any shape.

    The identity (``x`` itself) when ``training`` is False or ``p == 0``. ``p == 1`` gives zeros
    (as PyTorch). The mask is drawn from ``generator`` (an ``np.random.Generator``), by default
    ``tinydl.tensor.default_generator()``, so ``td.manual_seed`` makes it reproducible (on a GPU
    from a device generator seeded from it: reproducible too, but other masks than the CPU's).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    if generator is None:
        generator = default_generator()
    keep = uniform(generator, x.shape, like=x.data) >= np.float32(p)
    # NOTE: the scale is taken in x's dtype so float16/float32 stay as they are.
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * Tensor.from_array(mask)
