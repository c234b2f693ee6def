"""Window arguments as ``(height, width)`` pairs, for the kernels, the functional ops and layers.

It lives at the bottom (the backend imports nothing above it), so everything that takes a
``kernel_size``, ``stride``, ``padding`` or ``dilation`` can share this one helper.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pair"]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def pair(value, op: str = "pair", name: str = "value", minimum: int | None = None):
    """``value`` (an int, or a tuple or list of two ints) as a pair of Python ints.

    ``op`` and ``name`` make the error messages (``TypeError`` for anything else, ``ValueError``
    when an entry is below ``minimum``) name the op and the argument.

    >>> pair(3), pair([1, 2])
    ((3, 3), (1, 2))
    >>> pair(0, "conv2d", "stride", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: conv2d: stride must be >= 1, got (0, 0)
    """
    if _is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value)):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {out}")
    return out
