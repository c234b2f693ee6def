"""Dtypes: tinydl uses NumPy's dtype objects, reachable as ``td.float32`` and friends."""

from __future__ import annotations

import numpy as np

from .errors import DTypeError

__all__ = [
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool_",
    "to_dtype",
    "is_floating",
    "default_float",
]

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

default_float = float32


def to_dtype(dtype) -> np.dtype | None:
    """``None`` stays ``None``; a NumPy dtype, a type or a name (``"float64"``) becomes a dtype."""
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"dtype: cannot interpret {dtype!r} as a dtype ({exc})") from None


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"
