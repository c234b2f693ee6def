"""Creation functions (``td.tensor``, ``td.zeros``, ``td.randn``, ...), ``Parameter`` and the seed.

Python numbers become float32 (floats) or int64 (ints), as in PyTorch; a NumPy array keeps its
dtype unless ``dtype=`` says otherwise.
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor
from .backend import as_device, cupy_backend, get_device, is_device_array, to_numpy
from .dtypes import default_float, is_floating, to_dtype
from .errors import DTypeError

__all__ = [
    "Parameter",
    "tensor",
    "as_tensor",
    "from_numpy",
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "manual_seed",
    "default_generator",
]

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed tinydl's default generator (used by ``rand``, ``randn``, dropout, init, shuffling),
    and CuPy's when CuPy is in use."""
    global _generator
    _generator = np.random.default_rng(seed)
    cupy_backend.seed(seed)
    return _generator


def default_generator() -> np.random.Generator:
    return _generator


class Parameter(Tensor):
    """A leaf tensor that a Module registers as a learnable parameter."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _infer_dtype(data) -> np.dtype:
    """float32 for Python floats, int64 for ints, bool for bools; arrays keep theirs."""
    if isinstance(data, (np.ndarray, np.generic)) or is_device_array(data):
        return data.dtype
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return default_float
    if arr.dtype.kind in "iu":
        return np.dtype(np.int64)
    if arr.dtype.kind == "b":
        return np.dtype(np.bool_)
    raise DTypeError(f"tensor: cannot make a tensor from data of type {type(data).__name__}")


def tensor(data, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor holding a copy of ``data`` (a number, nested list, NumPy or CuPy array, or
    Tensor) on ``device`` (default: the device of ``data``, else the CPU)."""
    if isinstance(data, Tensor):
        data = data.detach().data
    if is_device_array(data):
        device = get_device(data) if device is None else device
        data = to_numpy(data) if as_device(device).type == "cpu" else data
    dtype = to_dtype(dtype) or _infer_dtype(data)
    return _create(device, "array", data, dtype=dtype, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with a NumPy (or CuPy) array of the right dtype that is
    already on ``device``."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype)
    if (
        (isinstance(data, np.ndarray) or is_device_array(data))
        and (dtype is None or to_dtype(dtype) == data.dtype)
        and (device is None or as_device(device) == get_device(data))
    ):
        return Tensor(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array``."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _size(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if any(not isinstance(n, (int, np.integer)) or n < 0 for n in size):
        raise ValueError(f"size: dimensions must be non-negative integers, got {size}")
    return tuple(int(n) for n in size)


def _create(device, fn: str, *args, requires_grad=False, **kwargs) -> Tensor:
    """``xp.<fn>(*args, **kwargs)`` of the device's array module, made on that device."""
    dev = as_device(device)
    xp = dev.xp
    with dev.use():
        return Tensor(getattr(xp, fn)(*args, **kwargs), requires_grad=requires_grad)


def zeros(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype = to_dtype(dtype) or default_float
    return _create(device, "zeros", _size(size), dtype, requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype = to_dtype(dtype) or default_float
    return _create(device, "ones", _size(size), dtype, requires_grad=requires_grad)


def empty(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype = to_dtype(dtype) or default_float
    return _create(device, "empty", _size(size), dtype, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    size = (size,) if isinstance(size, int) else tuple(size)
    dtype = to_dtype(dtype) or _infer_dtype(fill_value)
    return _create(device, "full", _size(size), fill_value, dtype, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None) -> Tensor:
    """``arange(5)``, ``arange(1, 5)``, ``arange(0, 1, 0.1)``: int64 for integer bounds, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if ints else default_float
    dtype = to_dtype(dtype)
    return _create(device, "arange", start, end, step, dtype=dtype, requires_grad=requires_grad)


def linspace(start, end, steps: int, dtype=None, requires_grad=False, device=None) -> Tensor:
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    dtype = to_dtype(dtype) or default_float
    return _create(device, "linspace", start, end, steps, dtype=dtype, requires_grad=requires_grad)


def eye(n: int, m: int | None = None, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype = to_dtype(dtype) or default_float
    return _create(device, "eye", n, m, dtype=dtype, requires_grad=requires_grad)


def _random(fn, size, dtype, requires_grad, device, generator):
    dtype = to_dtype(dtype) or default_float
    if not is_floating(dtype):
        raise DTypeError(f"{fn}: dtype must be floating point, got {dtype}")
    rng = generator or _generator
    draw = rng.random if fn == "rand" else rng.standard_normal
    arr = draw(_size(size), dtype=dtype if dtype != np.float16 else np.float32).astype(
        dtype, copy=False
    )
    # NOTE: drawn on the host from the seeded generator, so a model initialised on the GPU
    # starts from the same numbers as on the CPU.
    return _create(device, "asarray", arr, requires_grad=requires_grad)


def rand(*size, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _random("rand", size, dtype, requires_grad, device, generator)


def randn(*size, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    """Standard normal samples."""
    return _random("randn", size, dtype, requires_grad, device, generator)


def randint(low, high=None, size=(), dtype=None, device=None, generator=None) -> Tensor:
    """Integers in [low, high) (``randint(high, size=...)`` also works)."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    rng = generator or _generator
    arr = rng.integers(low, high, size=_size((size,) if isinstance(size, int) else size))
    return _create(device, "asarray", arr.astype(to_dtype(dtype) or np.int64))


def _like(t: Tensor, dtype, device):
    return (to_dtype(dtype) or t.dtype), (device if device is not None else str(t.device))


def zeros_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return zeros(*t.shape, dtype=dtype, requires_grad=requires_grad, device=device)


def ones_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return ones(*t.shape, dtype=dtype, requires_grad=requires_grad, device=device)


def empty_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return empty(*t.shape, dtype=dtype, requires_grad=requires_grad, device=device)


def full_like(t, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return full(t.shape, fill_value, dtype=dtype, requires_grad=requires_grad, device=device)


def rand_like(t, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return rand(
        *t.shape, dtype=dtype, requires_grad=requires_grad, device=device, generator=generator
    )


def randn_like(t, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return randn(
        *t.shape, dtype=dtype, requires_grad=requires_grad, device=device, generator=generator
    )


def randint_like(t, low, high=None, dtype=None, device=None, generator=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return randint(low, high, t.shape, dtype=dtype, device=device, generator=generator)
