"""Shape ops: reshape/view, flatten, transpose, permute, squeeze, unsqueeze, expand, cat, stack,
split, chunk, pad, flip, repeat and indexing."""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, broadcast_to
from ..errors import ShapeError
from ._util import normalize_dim

__all__ = ["reshape", "view", "transpose", "permute", "squeeze", "unsqueeze", "broadcast_to"]


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError(
                f"reshape: cannot reshape a tensor of shape {x.shape} "
                f"({x.size} elements) into {shape}"
            ) from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape), None


def reshape(x: Tensor, *shape) -> Tensor:
    """``x`` with a new shape (one dimension may be -1)."""
    return Reshape.apply(x, _shape_arg(shape))


view = reshape


class Permute(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.inverse = tuple(np.argsort(dims))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return grad.permute(ctx.inverse), None


def permute(x: Tensor, *dims) -> Tensor:
    """Reorder the dimensions: ``permute(x, (0, 2, 1))``."""
    dims = _shape_arg(dims)
    if sorted(normalize_dim("permute", d, x.ndim) for d in dims) != list(range(x.ndim)):
        raise ShapeError(
            f"permute: {dims} is not a permutation of the {x.ndim} dimensions of {x.shape}"
        )
    return Permute.apply(x, tuple(normalize_dim("permute", d, x.ndim) for d in dims))


def transpose(x: Tensor, dim0: int = -2, dim1: int = -1) -> Tensor:
    """Swap two dimensions."""
    dims = list(range(x.ndim))
    d0, d1 = normalize_dim("transpose", dim0, x.ndim), normalize_dim("transpose", dim1, x.ndim)
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, tuple(dims))


def squeeze(x: Tensor, dim=None) -> Tensor:
    """Drop dimensions of size 1 (all, or the given ``dim``, an int or a tuple)."""
    if dim is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        dims = {
            normalize_dim("squeeze", d, x.ndim) for d in ((dim,) if isinstance(dim, int) else dim)
        }
        shape = tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))
    return x if shape == x.shape else reshape(x, shape)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert a dimension of size 1 at ``dim``."""
    d = normalize_dim("unsqueeze", dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])
