"""einsum: Einstein summation over any subscripts NumPy accepts (ellipsis, implicit output,
repeated indices, broadcasting of size-1 dimensions). Its backward is einsums again, so it is
differentiable any number of times."""

from __future__ import annotations

import string
from dataclasses import dataclass

from ..autograd import Function, Tensor, broadcast_to
from ..backend import get_array_module
from ..errors import ShapeError
from ._util import lift

__all__ = ["einsum"]

_LETTERS = string.ascii_letters


@dataclass(frozen=True)
class _Spec:
    """Subscripts with the ellipsis spelled out as letters and the output made explicit."""

    inputs: tuple  # one string of letters per operand, one letter per dimension
    output: str
    sizes: dict  # letter -> its size after broadcasting

    @property
    def text(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    def fresh(self, taken: set) -> str:
        """A letter used nowhere in the spec nor in ``taken``."""
        used = set("".join(self.inputs)) | taken
        for c in _LETTERS:
            if c not in used:
                return c
        raise ShapeError("einsum: more than 52 distinct indices are needed")


def _term(subscripts: str, term: str, what: str) -> tuple[str, str, bool]:
    """``(letters before '...', letters after, has_ellipsis)`` of one term, or a clear error."""
    before, sep, after = term.partition("...")
    for part in (before, after):
        bad = [c for c in part if c not in _LETTERS]
        if bad:
            raise ShapeError(
                f"einsum: subscripts {subscripts!r}: {what} has {bad[0]!r}; use letters a-z, "
                "A-Z and at most one '...'"
            )
    return before, after, bool(sep)


def _parse(subscripts: str, shapes: list) -> _Spec:
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a str, got {type(subscripts).__name__}")
    text = subscripts.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    if "->" in rhs:
        raise ShapeError(f"einsum: subscripts {subscripts!r} contain '->' more than once")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ShapeError(
            f"einsum: subscripts {subscripts!r} name {len(terms)} operands but got "
            f"{len(shapes)} (shapes {', '.join(str(tuple(s)) for s in shapes)})"
        )
    parts = [_term(subscripts, t, f"operand {i}") for i, t in enumerate(terms)]
    ell = []
    for i, ((before, after, dots), shape) in enumerate(zip(parts, shapes)):
        extra = len(shape) - len(before) - len(after)
        if extra < 0 or (extra and not dots):
            raise ShapeError(
                f"einsum: operand {i} has shape {tuple(shape)} ({len(shape)} dimensions) but "
                f"its subscripts {terms[i]!r} name {len(before) + len(after)}"
            )
        ell.append(extra)
    named = "".join(b + a for b, a, _ in parts)
    spare = [c for c in _LETTERS if c not in named and c not in rhs]
    if max(ell, default=0) > len(spare):
        raise ShapeError(f"einsum: subscripts {subscripts!r} need more than 52 indices")
    dots = "".join(spare[: max(ell, default=0)])
    inputs = tuple(b + dots[len(dots) - e :] + a for (b, a, _), e in zip(parts, ell))
    if arrow:
        before, after, has = _term(subscripts, rhs, "the output")
        if dots and not has:
            raise ShapeError(
                f"einsum: subscripts {subscripts!r}: the operands have '...' dimensions, so "
                "the output needs '...' too"
            )
        output = before + dots + after
        for c in output:
            if output.count(c) > 1:
                raise ShapeError(f"einsum: subscripts {subscripts!r} repeat {c!r} in the output")
            if c not in named + dots:
                raise ShapeError(
                    f"einsum: subscripts {subscripts!r}: output index {c!r} is in no operand"
                )
    else:  # NumPy's implicit output: the ellipsis, then the indices seen once, in ASCII order
        output = dots + "".join(sorted(c for c in set(named) if named.count(c) == 1))
    return _Spec(inputs, output, _sizes(subscripts, inputs, shapes))


def _sizes(subscripts: str, inputs: tuple, shapes: list) -> dict:
    """Each letter's size; a size-1 dimension broadcasts, other sizes must agree."""
    sizes, where = {}, {}
    for i, (term, shape) in enumerate(zip(inputs, shapes)):
        for c, n in zip(term, shape):
            if term.count(c) > 1 and len({m for d, m in zip(term, shape) if d == c}) > 1:
                raise ShapeError(
                    f"einsum: subscripts {subscripts!r}: operand {i} (shape {tuple(shape)}) "
                    f"repeats index {c!r} over dimensions of different sizes"
                )
            if c not in sizes or sizes[c] == 1:
                sizes[c], where[c] = n, i
            elif n not in (1, sizes[c]):
                j = where[c]
                raise ShapeError(
                    f"einsum: subscripts {subscripts!r}: index {c!r} has size {sizes[c]} in "
                    f"operand {j} (shape {tuple(shapes[j])}) but {n} in operand {i} "
                    f"(shape {tuple(shape)})"
                )
    return sizes


def _run(xp, text: str, arrays):
    # NOTE: optimize lets NumPy contract pairs with BLAS (tensordot); unoptimized einsum
    # loops in C without it and is many times slower on matmul-sized operands.
    try:
        return xp.einsum(text, *arrays, optimize=len(arrays) > 1)
    except ValueError as exc:
        shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
        raise ShapeError(f"einsum: {text!r} on shapes {shapes}: {exc}") from None


class Einsum(Function):
    @staticmethod
    def forward(ctx, spec, *operands):
        ctx.spec = spec
        ctx.save_for_backward(*operands)
        return _run(get_array_module(*operands), spec.text, operands)

    @staticmethod
    def backward(ctx, grad):
        operands = ctx.saved_tensors
        grads = [
            _operand_grad(ctx.spec, k, grad, operands) if need else None
            for k, need in enumerate(ctx.needs_input_grad[1:])
        ]
        return (None, *grads)


def _operand_grad(spec: _Spec, k: int, grad: Tensor, operands) -> Tensor:
    """The gradient of operand ``k``: the output gradient contracted with the other operands
    into ``k``'s subscripts. A repeated index writes onto the diagonal (a product with the
    identity), an index found nowhere else is broadcast back, a broadcast size-1 dimension
    is summed away."""
    term, shape = spec.inputs[k], operands[k].shape
    xp = get_array_module(grad.data)
    terms = [spec.output] + [t for j, t in enumerate(spec.inputs) if j != k]
    tensors = [grad] + [t for j, t in enumerate(operands) if j != k]
    letters = []  # per dimension of operand k: its letter in the result, None if summed away
    taken = set(spec.output)
    for c, n in zip(term, shape):
        if n != spec.sizes[c]:  # a size-1 dimension that broadcast: summed away
            letters.append(None)
        elif c in letters:  # a repeated index: the identity ties a new letter to it
            f = spec.fresh(taken)
            taken.add(f)
            terms.append(c + f)
            tensors.append(Tensor.from_array(xp.eye(n, dtype=grad.dtype)))
            letters.append(f)
        else:
            letters.append(c)
    present = set("".join(terms))
    letters = [c if c in present else None for c in letters]
    out = einsum(",".join(terms) + "->" + "".join(c for c in letters if c), *tensors)
    sides = iter(out.shape)
    out = out.reshape(tuple(next(sides) if c else 1 for c in letters))
    return out if out.shape == tuple(shape) else broadcast_to(out, shape)


def einsum(subscripts: str, *operands) -> Tensor:
    """Einstein summation, as ``numpy.einsum`` and ``torch.einsum``: ``einsum("bij,bjk->bik",
    a, b)``; the operands may also come as one list. Ellipsis ``...``, implicit output (no
    ``->``: the indices seen once, in order), repeated indices (``"ii->i"``: the diagonal) and
    broadcasting of size-1 dimensions all work; the gradient is an einsum again.

    >>> import tinydl as td
    >>> td.einsum("ii->", td.eye(3))
    tensor(3.)
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    tensors = [lift(t) for t in operands]
    spec = _parse(subscripts, [t.shape for t in tensors])
    return Einsum.apply(spec, *tensors)
