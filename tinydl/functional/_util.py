"""Small helpers shared by the functional modules: lifting numbers to tensors, shape errors."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module
from ..dtypes import default_float
from ..errors import ShapeError

__all__ = []


def lift(x, like: Tensor | None = None) -> Tensor:
    """Make ``x`` a Tensor. A Python number takes the dtype of ``like`` (as in PyTorch, a scalar
    does not promote a float32 tensor to float64); a float next to an integer tensor is float32."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float)) and like is not None:
        kind = like.dtype.kind
        if kind == "f" or (kind in "iu" and not isinstance(x, float)):
            dtype = like.dtype
        elif isinstance(x, float):
            dtype = default_float
        else:
            dtype = np.int64 if not isinstance(x, bool) else np.bool_
        return Tensor.from_array(get_array_module(like.data).asarray(x, dtype=dtype))
    if isinstance(x, np.generic) and like is not None:  # np.float32(2), np.int64(3): like's device
        return Tensor.from_array(get_array_module(like.data).asarray(x))
    if isinstance(x, float):
        return Tensor.from_array(np.asarray(x, dtype=default_float))
    if isinstance(x, (bool, int)):
        return Tensor.from_array(np.asarray(x, dtype=np.int64 if not isinstance(x, bool) else np.bool_))
    return Tensor.from_array(np.asarray(x))


def lift_pair(a, b) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as Tensors; numbers follow the other operand's dtype."""
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):  # the common case, without a call
            return a, b
        return a, lift(b, a)
    return lift(a, b if isinstance(b, Tensor) else None), lift(b)


def binary(op: str, fn, a, b):
    """Apply a broadcasting NumPy function, turning NumPy's shape error into tinydl's."""
    try:
        return fn(a, b)
    except ValueError as exc:
        if "broadcast" in str(exc):
            raise ShapeError(
                f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together"
            ) from None
        raise


def normalize_dim(op: str, dim: int, ndim: int) -> int:
    """A dimension index in [0, ndim), from a possibly negative one, or a clear error."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % n
