"""Shape ops: reshape/view, flatten, transpose, permute, squeeze, unsqueeze, expand, cat, stack,
split, chunk, pad, flip, repeat and indexing."""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, broadcast_to
from ..backend import get_array_module
from ..errors import ShapeError
from ._util import normalize_dim

__all__ = [
    "reshape",
    "view",
    "flatten",
    "transpose",
    "permute",
    "squeeze",
    "unsqueeze",
    "expand",
    "broadcast_to",
    "cat",
    "stack",
    "split",
    "chunk",
    "pad",
    "flip",
    "repeat",
    "getitem",
]


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


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim..end_dim`` into one: ``(2, 3, 4)``, 1 -> ``(2, 12)``.
    A 0-d tensor becomes ``(1,)``."""
    if x.ndim == 0:
        return reshape(x, (1,))
    s = normalize_dim("flatten", start_dim, x.ndim)
    e = normalize_dim("flatten", end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    n = 1
    for size in x.shape[s : e + 1]:
        n *= size
    return reshape(x, x.shape[:s] + (n,) + x.shape[e + 1 :])


def expand(x: Tensor, *sizes) -> Tensor:
    """Broadcast ``x`` to ``sizes`` without copying; -1 keeps a size; new dims go in front."""
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ShapeError(
            f"expand: {len(sizes)} sizes {sizes} are fewer than the {x.ndim} dims of {x.shape}"
        )
    shape = []
    for i, n in enumerate(sizes):
        old = x.shape[i - lead] if i >= lead else None
        if n == -1 and old is None:
            raise ShapeError(f"expand: -1 is not allowed for the new leading dim {i} in {sizes}")
        n = old if n == -1 else n
        if old is not None and old not in (1, n):
            raise ShapeError(
                f"expand: cannot expand shape {x.shape} to {sizes}: dim {i} has size {old}, "
                f"which is not 1"
            )
        shape.append(n)
    return broadcast_to(x, tuple(shape))


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return get_array_module(*arrays).concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return split(grad, ctx.sizes, ctx.dim)


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing ``dim``; their other dimensions must agree.
    ``[(2, 3), (4, 3)]``, dim 0 -> ``(6, 3)``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    first = tensors[0]
    if first.ndim == 0:
        raise ShapeError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    d = normalize_dim("cat", dim, first.ndim)
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != first.ndim:
            raise ShapeError(
                f"cat: tensor {i} has {t.ndim} dimensions (shape {t.shape}) but tensor 0 has "
                f"{first.ndim} (shape {first.shape})"
            )
        if t.shape[:d] + t.shape[d + 1 :] != first.shape[:d] + first.shape[d + 1 :]:
            raise ShapeError(
                f"cat: tensor {i} has shape {t.shape} but tensor 0 has {first.shape} "
                f"outside dim {d}"
            )
    return Cat.apply(*tensors, dim=d)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new ``dim``: 3 x ``(2, 4)``, dim 1 -> ``(2, 3, 4)``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise ShapeError(
                f"stack: tensor {i} has shape {t.shape} but tensor 0 has {tensors[0].shape}"
            )
    d = normalize_dim("stack", dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


class Split(Function):
    """One input, one output per piece; the pieces nobody uses get zero gradients."""

    @staticmethod
    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        bounds = np.cumsum(sizes)[:-1].tolist()
        return tuple(get_array_module(x).split(x, bounds, axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return cat(grads, ctx.dim), None, None


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Pieces along ``dim``: an int gives pieces of that size (the last may be smaller), a list
    gives the sizes. ``(5, 2)``, 2 -> ``(2, 2), (2, 2), (1, 2)``. Returns a tuple."""
    if x.ndim == 0:
        raise ShapeError("split: a 0-d tensor has no dimension to split")
    d = normalize_dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        sizes = sizes or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ShapeError(
                f"split: sections {sizes} must be non-negative and add up to {n}, the size of "
                f"dim {d} of shape {x.shape}"
            )
    if len(sizes) == 1:
        return (x,)
    return Split.apply(x, tuple(sizes), d)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    """``chunks`` pieces of ``ceil(n / chunks)`` along ``dim`` (fewer when they run out),
    as PyTorch: ``(6,)``, 4 -> sizes 2, 2, 2."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    if x.ndim == 0:
        raise ShapeError("chunk: a 0-d tensor has no dimension to split")
    n = x.shape[normalize_dim("chunk", dim, x.ndim)]
    return split(x, max(-(-n // chunks), 1), dim)


class Pad(Function):
    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.index = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return get_array_module(x).pad(x, widths, constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return getitem(grad, ctx.index), None, None


def pad(x: Tensor, pad, value: float = 0.0) -> Tensor:
    """Constant padding, PyTorch's order: ``(left, right)`` of the last dim, then ``(top,
    bottom)`` of the one before, ... ``(2, 3)``, ``(1, 1, 2, 0)`` -> ``(4, 5)``."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) > 2 * x.ndim:
        raise ShapeError(
            f"pad: expected an even number of at most {2 * x.ndim} values for shape {x.shape}, "
            f"got {pad}"
        )
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding is not supported, got {pad}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad.apply(x, tuple(widths), value)


class Flip(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return get_array_module(x).flip(x, axis=dims)

    @staticmethod
    def backward(ctx, grad):
        return Flip.apply(grad, ctx.dims), None


def flip(x: Tensor, dims) -> Tensor:
    """Reverse the order of elements along ``dims`` (an int or a tuple)."""
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return Flip.apply(x, tuple(normalize_dim("flip", d, x.ndim) for d in dims))


class Repeat(Function):
    @staticmethod
    def forward(ctx, x, sizes):
        shape = (1,) * (len(sizes) - x.ndim) + x.shape
        ctx.shape, ctx.sizes, ctx.padded = x.shape, sizes, shape
        return get_array_module(x).tile(x.reshape(shape), sizes)

    @staticmethod
    def backward(ctx, grad):
        # (r0 * n0, r1 * n1, ...) -> (r0, n0, r1, n1, ...), then sum the repeat axes
        split_shape = sum(((r, n) for r, n in zip(ctx.sizes, ctx.padded)), ())
        g = grad.reshape(split_shape).sum(tuple(range(0, len(split_shape), 2)))
        return g.reshape(ctx.shape), None


def repeat(x: Tensor, *sizes) -> Tensor:
    """Tile ``x``: ``sizes[i]`` copies along dim i (``np.tile``; extra sizes add leading dims).
    ``(2, 3)``, (2, 1, 2) -> ``(2, 2, 6)``."""
    sizes = _shape_arg(sizes)
    if len(sizes) < x.ndim:
        raise ShapeError(
            f"repeat: {len(sizes)} sizes {sizes} are fewer than the {x.ndim} dims of {x.shape}"
        )
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: sizes must be non-negative, got {sizes}")
    return Repeat.apply(x, tuple(int(s) for s in sizes))


def _index_part(part, xp):
    """One component of an index as NumPy/CuPy understands it (Tensors and lists -> arrays)."""
    if isinstance(part, Tensor):
        return xp.asarray(part.data)
    if isinstance(part, (list, tuple)):
        arr = np.asarray(part)
        return xp.asarray(arr.astype(np.intp) if arr.size == 0 else arr)
    if hasattr(part, "shape") and hasattr(part, "dtype"):
        return xp.asarray(part)
    return part


def _is_basic(index: tuple) -> bool:
    """Only ints, slices, None and Ellipsis: every element is picked at most once."""
    return all(p is None or p is Ellipsis or isinstance(p, slice) or type(p) is int for p in index)


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        try:
            return x[index]
        except IndexError as exc:
            raise IndexError(f"getitem: {exc} (tensor of shape {x.shape})") from None

    @staticmethod
    def backward(ctx, grad):
        return IndexAdd.apply(grad, ctx.shape, ctx.index), None


class IndexAdd(Function):
    """Scatter-add ``grad`` into zeros of ``shape`` at ``index`` (repeated indices add up)."""

    @staticmethod
    def forward(ctx, grad, shape, index):
        ctx.index = index
        xp = get_array_module(grad)
        out = xp.zeros(shape, grad.dtype)
        if _is_basic(index):
            out[index] = grad
        else:
            xp.add.at(out, index, grad)
        return out

    @staticmethod
    def backward(ctx, grad):
        return GetItem.apply(grad, ctx.index), None, None


def getitem(x: Tensor, index) -> Tensor:
    """``x[index]`` with NumPy's rules: ints, slices (negative steps too), None, Ellipsis, bool
    masks and integer arrays, lists or Tensors. The gradient scatter-adds, so an element picked
    twice gets both gradients."""
    xp = get_array_module(x.data)
    parts = index if isinstance(index, tuple) else (index,)
    return GetItem.apply(x, tuple(_index_part(p, xp) for p in parts))
