"""Tensor's array-like surface: shape facts, conversions, printing and Python operators.

Kept apart from the autograd core so each file stays readable; ``Tensor`` (in ``autograd``)
inherits it. Operators reach the functional ops through ``_F``, the one late import.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np

from .backend import Device, get_device, to_numpy
from .backend import as_array as _as_array
from .dtypes import to_dtype
from .errors import BackwardError, ShapeError

__all__ = ["TensorMethods", "parse_to_args"]

if TYPE_CHECKING:
    from .autograd import Tensor

_functional = None


def _F():
    """The functional ops. NOTE: the one late import of the package: ``tinydl.functional`` builds
    on this module, and Tensor's operator methods reach it through here."""
    global _functional
    if _functional is None:
        from . import functional

        _functional = functional
    return _functional


def parse_to_args(args, device=None, dtype=None):
    """Split ``.to(...)`` positional arguments into a device and a dtype."""
    for a in args:
        is_device = isinstance(a, Device) or (
            isinstance(a, str) and a.partition(":")[0] in ("cpu", "cuda")
        )
        device, dtype = (a, dtype) if is_device else (device, a)
    return device, dtype


class TensorMethods:
    """Methods of ``Tensor`` that need only ``self.data`` and the functional ops."""

    __slots__ = ()

    # -- array facts -----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> Device:
        return get_device(self.data)

    def size(self, dim: int | None = None):
        """The shape (PyTorch's ``size()``), or the length of one dimension."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def dim(self) -> int:
        return self.data.ndim

    def item(self):
        if self.data.size != 1:
            raise ShapeError(
                f"item: only a one-element tensor converts to a number, got shape {self.shape}"
            )
        return self.data.reshape(()).item()

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shares memory on the CPU). Refuses a tensor in a graph
        that requires grad, as PyTorch does; call ``.detach().numpy()``."""
        if self._requires_grad:
            raise BackwardError("numpy: the tensor requires grad; use tensor.detach().numpy()")
        return to_numpy(self.data)

    def tolist(self):
        return self.detach().numpy().tolist()

    def __array__(self, dtype=None, copy=None):
        a = self.detach().numpy()
        return a if dtype is None else a.astype(dtype)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"bool: a tensor of shape {self.shape} with more than one element is ambiguous"
            )
        return bool(self.data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = np.array2string(
            np.asarray(self.detach().numpy()), separator=", ", prefix="tensor(", precision=4
        )
        extra = []
        if str(self.device) != "cpu":
            extra.append(f"device='{self.device}'")
        if self.dtype not in (np.float32, np.int64, np.bool_) or self.data.size == 0:
            extra.append(f"dtype={self.dtype}")
        if self._node is not None:
            extra.append(f"grad_fn=<{self._node.name}Backward>")
        elif self._requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    # -- conversions -------------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None) -> Tensor:
        """``.to(dtype)``, ``.to("cuda")`` or ``.to(device, dtype)``. Differentiable."""
        device, dtype = parse_to_args(args, device, dtype)
        out = self
        if dtype is not None and to_dtype(dtype) != self.dtype:
            out = _F().cast(out, to_dtype(dtype))
        if device is not None and Device(device) != self.device:
            out = _F().to_device(out, Device(device))
        return out

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def half(self) -> Tensor:
        return self.to(np.float16)

    def long(self) -> Tensor:
        return self.to(np.int64)

    def int(self) -> Tensor:
        return self.to(np.int32)

    def bool(self) -> Tensor:
        return self.to(np.bool_)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    astype = to

    # -- operators: comparisons give bool tensors without gradient; arithmetic is differentiable
    def _compare(self, other, op):
        other = other.data if isinstance(other, TensorMethods) else other
        return self.from_array(_as_array(op(self.data, other)))

    __eq__ = lambda self, other: self._compare(other, operator.eq)  # noqa: E731
    __ne__ = lambda self, other: self._compare(other, operator.ne)  # noqa: E731
    __lt__ = lambda self, other: self._compare(other, operator.lt)  # noqa: E731
    __le__ = lambda self, other: self._compare(other, operator.le)  # noqa: E731
    __gt__ = lambda self, other: self._compare(other, operator.gt)  # noqa: E731
    __ge__ = lambda self, other: self._compare(other, operator.ge)  # noqa: E731
    # NOTE: `_functional or _F()`: a global read instead of a call on every operator
    __add__ = lambda self, other: (_functional or _F()).add(self, other)  # noqa: E731
    __radd__ = lambda self, other: (_functional or _F()).add(other, self)  # noqa: E731
    __sub__ = lambda self, other: (_functional or _F()).sub(self, other)  # noqa: E731
    __rsub__ = lambda self, other: (_functional or _F()).sub(other, self)  # noqa: E731
    __mul__ = lambda self, other: (_functional or _F()).mul(self, other)  # noqa: E731
    __rmul__ = lambda self, other: (_functional or _F()).mul(other, self)  # noqa: E731
    __truediv__ = lambda self, other: (_functional or _F()).div(self, other)  # noqa: E731
    __rtruediv__ = lambda self, other: (_functional or _F()).div(other, self)  # noqa: E731
    __pow__ = lambda self, other: (_functional or _F()).pow(self, other)  # noqa: E731
    __rpow__ = lambda self, other: (_functional or _F()).pow(other, self)  # noqa: E731
    __matmul__ = lambda self, other: (_functional or _F()).matmul(self, other)  # noqa: E731
    __rmatmul__ = lambda self, other: (_functional or _F()).matmul(other, self)  # noqa: E731

    def __neg__(self):
        return (_functional or _F()).neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _F().abs(self)

    def __getitem__(self, index):
        return _F().getitem(self, index)

    def __setitem__(self, index, value):
        raise TypeError(
            "tinydl tensors do not support item assignment (no in-place autograd); build the "
            "result with td.where, td.cat or F.pad, or edit tensor.data under td.no_grad()"
        )

    @property
    def T(self) -> Tensor:
        return _F().permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:
        return _F().transpose(self, -2, -1)


def _method(name):
    def method(self, *args, **kwargs):
        return getattr(_functional or _F(), name)(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Same as ``tinydl.functional.{name}(self, ...)``."
    return method


# Tensor methods that forward to the functional op of the same name, as in PyTorch.
_TENSOR_METHODS = (
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "matmul",
    "exp",
    "log",
    "log1p",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "clamp",
    "clip",
    "maximum",
    "minimum",
    "sum",
    "mean",
    "max",
    "min",
    "var",
    "std",
    "logsumexp",
    "prod",
    "argmax",
    "argmin",
    "norm",
    "reshape",
    "view",
    "flatten",
    "transpose",
    "permute",
    "squeeze",
    "unsqueeze",
    "expand",
    "broadcast_to",
    "split",
    "chunk",
    "flip",
    "repeat",
    "softmax",
    "log_softmax",
)
for _name in _TENSOR_METHODS:
    setattr(TensorMethods, _name, _method(_name))
del _name
