"""Function transforms on top of double backward, shaped as ``torch.autograd.functional``.

Reach them as ``td.autograd.functional.jacobian`` (PyTorch's spelling) or import them from
``tinydl.autograd_functional``. ``inputs`` is a Tensor or a tuple of Tensors and ``func`` takes
them as positional arguments; results come back in the same structure as PyTorch's.

Everything is reverse mode. ``jvp`` and ``hvp`` use the double-vjp trick: for a variable ``u``
shaped as the outputs, the vjp ``g(u) = J^T u`` is linear in ``u``, so the vjp of ``g`` with
``v`` gives ``(d g / d u)^T v = J v``, a forward-mode product out of two backward passes (the
first one with ``create_graph=True``). ``create_graph=True`` keeps the graph of the result, so
it can be differentiated again.

>>> from tinydl.autograd_functional import jacobian, hvp
>>> x = td.tensor([1.0, 2.0], dtype=td.float64)
>>> jacobian(lambda x: x ** 2, x)
tensor([[2., 0.],
        [0., 4.]], dtype=float64)
>>> hvp(lambda x: (x ** 3).sum(), x, td.ones_like(x))[1]      # 6 x * v
tensor([ 6., 12.], dtype=float64)
"""

from __future__ import annotations

from .autograd import Tensor, enable_grad, grad
from .backend import get_array_module
from .dtypes import is_floating
from .errors import BackwardError, DTypeError, ShapeError
from .functional.shape import reshape, stack

__all__ = ["jacobian", "hessian", "vjp", "jvp", "vhp", "hvp"]

# what a result that is None (or has no graph) means, per stage, for strict=True
_INDEPENDENT = {
    "back": "the function's output does not depend on input {i}",
    "back_trick": "the vjp does not depend on entry {i} of its grad_outputs (output {i} does not "
    "depend on the inputs), so the double-vjp trick cannot give a forward-mode product",
    "double_back_trick": "the Hessian does not depend on entry {i} of the grad_jacobian (the "
    "gradient is constant in input {i}), so the double-vjp trick cannot give the product",
}
_NO_GRAD = {
    "outputs": "output {i} of the function does not require grad: it was not computed from the "
    "inputs in a differentiable way",
    "grad_inputs": "the gradient with respect to input {i} does not depend on the inputs",
    "jacobian": "the gradient with respect to input {i} does not depend on the inputs (the "
    "function is at most linear in it)",
}


def _as_tuple(x, what: str, fn: str) -> tuple[bool, tuple]:
    """``(was it a tuple, the Tensors as a tuple)``; anything else raises naming ``fn``."""
    is_tuple = isinstance(x, (tuple, list))
    items = tuple(x) if is_tuple else (x,)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            where = f" (index {i})" if is_tuple else ""
            raise TypeError(
                f"{fn}: {what} must be a Tensor or a tuple of Tensors, got "
                f"{type(t).__name__}{where}"
            )
    return is_tuple, items


def _prepare(tensors, create_graph: bool, need_graph: bool, fn: str, what: str) -> tuple:
    """Fresh tensors to differentiate at. With ``create_graph`` a tensor that requires grad is
    aliased, not detached, so that the results keep their graph back to the caller's tensor."""
    out = []
    for i, t in enumerate(tensors):
        if need_graph and not is_floating(t.dtype):
            raise DTypeError(
                f"{fn}: {what} {i} has dtype {t.dtype}; only floating-point tensors can be "
                "differentiated"
            )
        if create_graph and t.requires_grad:
            out.append(reshape(t, t.shape))  # NOTE: a non-leaf view, as torch's view_as
        else:
            out.append(t.detach().requires_grad_(need_graph))
    return tuple(out)


def _check_v(v, refs, fn: str, what: str) -> None:
    if len(v) != len(refs):
        raise ShapeError(f"{fn}: v has {len(v)} tensors for {len(refs)} {what}")
    for i, (a, b) in enumerate(zip(v, refs)):
        if a.shape != b.shape:
            raise ShapeError(f"{fn}: v[{i}] has shape {a.shape} but {what} {i} has {b.shape}")


def _vector(v, refs, create_graph: bool, fn: str, what: str) -> tuple:
    """``v`` checked against ``refs``; ``None`` is allowed for a single one-element ``refs``."""
    if v is None:
        if len(refs) != 1 or refs[0].data.size != 1:
            raise ShapeError(
                f"{fn}: v can be None only when the {what} are a single Tensor with one "
                f"element, got shapes {[r.shape for r in refs]}; pass v"
            )
        return (None,)
    _, v = _as_tuple(v, "v", fn)
    v = _prepare(v, create_graph, False, fn, "v")
    _check_v(v, refs, fn, what)
    return v


def _check_requires_grad(tensors, kind: str, fn: str, strict: bool) -> None:
    if strict:
        for i, t in enumerate(tensors):
            if t is None or not t.requires_grad:
                raise BackwardError(f"{fn}: {_NO_GRAD[kind].format(i=i)}; strict=True forbids it")


def _grad(outputs, inputs, grad_outputs=None, create_graph: bool = False) -> tuple:
    """``td.grad`` over the outputs that require grad, ``None`` for an input they do not use."""
    grad_outputs = (None,) * len(outputs) if grad_outputs is None else grad_outputs
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o is not None and o.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    outs, gs = zip(*pairs)
    # NOTE: retain_graph, because jacobian and the double-vjp trick walk one graph again
    return grad(list(outs), list(inputs), list(gs), retain_graph=True,
                create_graph=create_graph, allow_unused=True)


def _fill_zeros(grads, refs, strict: bool, create_graph: bool, fn: str, stage: str) -> tuple:
    """Zeros (shaped as ``refs``) where a gradient is ``None``; with ``strict``, an error."""
    out = []
    for i, (g, ref) in enumerate(zip(grads, refs)):
        if g is None:
            if strict:
                raise BackwardError(f"{fn}: {_INDEPENDENT[stage].format(i=i)}; strict=True "
                                    "forbids it")
            g = Tensor.from_array(get_array_module(ref.data).zeros(ref.shape, ref.dtype))
        elif strict and create_graph and not g.requires_grad:
            raise BackwardError(f"{fn}: the derivative with respect to input {i} is constant "
                                "(it has no graph to differentiate further); strict=True forbids it")
        out.append(g)
    return tuple(out)


def _finish(results, create_graph: bool):
    """Detach the results unless ``create_graph`` (then they keep their graph)."""
    if isinstance(results, tuple):
        return tuple(_finish(r, create_graph) for r in results)
    return results if create_graph else results.detach()


def _unwrap(results, flags):
    """PyTorch's nesting: a level of tuple only where the caller gave (or func returned) one."""
    if isinstance(flags, tuple):
        if not flags[1]:
            results = tuple(r[0] for r in results)
        flags = flags[0]
    return results if flags else results[0]


def _call(func, inputs, fn: str, strict: bool) -> tuple[bool, tuple]:
    is_tuple, outputs = _as_tuple(func(*inputs), "the output of func", fn)
    _check_requires_grad(outputs, "outputs", fn, strict)
    return is_tuple, outputs


def _jacobian_rows(out, i, inputs, create_graph, strict, fn) -> tuple:
    """d out / d input for every input: one backward pass per element of ``out``."""
    xp = get_array_module(out.data)
    rows = [[] for _ in inputs]
    for j in range(out.data.size):
        onehot = xp.zeros(out.data.size, out.dtype)
        onehot[j] = 1
        row = _grad((out,), inputs, (Tensor.from_array(onehot.reshape(out.shape)),), create_graph)
        for k, g in enumerate(row):
            if g is None and strict:
                raise BackwardError(f"{fn}: output {i} does not depend on input {k}; "
                                    "strict=True forbids it")
            rows[k].append(g)
    rows = [_fill_zeros(r, [inp] * len(r), strict, create_graph, fn, "back")
            for r, inp in zip(rows, inputs)]
    return tuple(
        reshape(stack(r), out.shape + inp.shape) if r
        else Tensor.from_array(xp.zeros(out.shape + inp.shape, inp.dtype))
        for r, inp in zip(rows, inputs)
    )


def _jacobian(func, inputs, create_graph, strict, fn):
    with enable_grad():
        in_tuple, inputs = _as_tuple(inputs, "inputs", fn)
        inputs = _prepare(inputs, create_graph, True, fn, "input")
        out_tuple, outputs = _call(func, inputs, fn, strict)
        jac = tuple(_jacobian_rows(out, i, inputs, create_graph, strict, fn)
                    for i, out in enumerate(outputs))
    return _unwrap(_finish(jac, create_graph), (out_tuple, in_tuple))


def jacobian(func, inputs, create_graph: bool = False, strict: bool = False):
    """The Jacobian of ``func`` at ``inputs``: entry ``[i][j]`` has shape
    ``outputs[i].shape + inputs[j].shape`` (the tuple levels appear only where ``func`` returns
    a tuple or ``inputs`` is one). One backward pass per output element.

    ``strict=True`` raises ``BackwardError`` where an output does not depend on an input
    (instead of returning zeros); ``create_graph=True`` makes the result differentiable.
    """
    return _jacobian(func, inputs, create_graph, strict, "jacobian")


def hessian(func, inputs, create_graph: bool = False, strict: bool = False):
    """The Hessian of a scalar ``func``: the Jacobian of its gradient. Entry ``[i][j]`` has shape
    ``inputs[i].shape + inputs[j].shape`` (no tuple levels for a single input)."""
    in_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")

    def scalar(*xs):
        out_tuple, outs = _call(func, xs, "hessian", strict)
        if out_tuple:
            raise TypeError(f"hessian: func must return a single Tensor, got a tuple of {len(outs)}")
        if outs[0].data.size != 1:
            raise ShapeError(f"hessian: func must return one element, got shape {outs[0].shape}")
        return reshape(outs[0], ())

    def gradient(*xs):
        jac = _jacobian(scalar, xs, True, strict, "hessian")
        _check_requires_grad(jac, "jacobian", "hessian", strict)
        return jac

    res = _jacobian(gradient, inputs, create_graph, strict, "hessian")
    return _unwrap(res, (in_tuple, in_tuple))


def vjp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), v^T J)``: the vector-Jacobian product, one backward pass. ``v`` is shaped
    as the outputs (it may be None for a one-element output); the product as the inputs."""
    with enable_grad():
        in_tuple, inputs = _as_tuple(inputs, "inputs", "vjp")
        inputs = _prepare(inputs, create_graph, True, "vjp", "input")
        out_tuple, outputs = _call(func, inputs, "vjp", strict)
        v = _vector(v, outputs, create_graph, "vjp", "outputs")
        res = _grad(outputs, inputs, v, create_graph)
        res = _fill_zeros(res, inputs, strict, create_graph, "vjp", "back")
    return (_unwrap(_finish(outputs, create_graph), out_tuple),
            _unwrap(_finish(res, create_graph), in_tuple))


def jvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), J v)``: the Jacobian-vector product by the double-vjp trick. ``v`` is
    shaped as the inputs (it may be None for a one-element input); the product as the outputs."""
    with enable_grad():
        in_tuple, inputs = _as_tuple(inputs, "inputs", "jvp")
        inputs = _prepare(inputs, create_graph, True, "jvp", "input")
        v = _vector(v, inputs, create_graph, "jvp", "inputs")
        out_tuple, outputs = _call(func, inputs, "jvp", strict)
        u = tuple(_zeros_requiring_grad(o) for o in outputs)
        grad_inputs = _grad(outputs, inputs, u, create_graph=True)
        _check_requires_grad(grad_inputs, "grad_inputs", "jvp", strict)
        res = _grad(grad_inputs, u, v, create_graph)
        res = _fill_zeros(res, outputs, strict, create_graph, "jvp", "back_trick")
    return (_unwrap(_finish(outputs, create_graph), out_tuple),
            _unwrap(_finish(res, create_graph), out_tuple))


def _zeros_requiring_grad(ref: Tensor) -> Tensor:
    zeros = get_array_module(ref.data).zeros(ref.shape, ref.dtype)
    return Tensor.from_array(zeros).requires_grad_(True)


def _scalar_gradient(func, inputs, create_graph, strict, fn):
    """Prepared inputs, ``(is_tuple, outputs)`` and the gradient with a graph, for vhp/hvp."""
    in_tuple, inputs = _as_tuple(inputs, "inputs", fn)
    inputs = _prepare(inputs, create_graph, True, fn, "input")
    out_tuple, outputs = _call(func, inputs, fn, strict)
    if out_tuple:
        raise TypeError(f"{fn}: func must return a single Tensor, got a tuple of {len(outputs)}")
    if outputs[0].data.size != 1:
        raise ShapeError(f"{fn}: func must return one element, got shape {outputs[0].shape}")
    jac = _grad(outputs, inputs, create_graph=True)
    _check_requires_grad(jac, "jacobian", fn, strict)
    return in_tuple, inputs, outputs, jac


def vhp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), v^T H)`` for a scalar ``func``: the vjp of its gradient with ``v``."""
    with enable_grad():
        in_tuple, inputs, outputs, jac = _scalar_gradient(func, inputs, create_graph, strict, "vhp")
        v = _vector(v, inputs, create_graph, "vhp", "inputs")
        res = _grad(jac, inputs, v, create_graph)
        res = _fill_zeros(res, inputs, strict, create_graph, "vhp", "back")
    return _finish(outputs[0], create_graph), _unwrap(_finish(res, create_graph), in_tuple)


def hvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), H v)`` for a scalar ``func``, by the double-vjp trick on its gradient
    (equal to ``vhp`` when the Hessian is symmetric, as for any twice continuously
    differentiable function; ``vhp`` is one backward pass cheaper)."""
    with enable_grad():
        in_tuple, inputs, outputs, jac = _scalar_gradient(func, inputs, create_graph, strict, "hvp")
        v = _vector(v, inputs, create_graph, "hvp", "inputs")
        u = tuple(_zeros_requiring_grad(x) for x in inputs)
        double_back = _grad(jac, inputs, u, create_graph=True)
        res = _grad(double_back, u, v, create_graph)
        res = _fill_zeros(res, inputs, strict, create_graph, "hvp", "double_back_trick")
    return _finish(outputs[0], create_graph), _unwrap(_finish(res, create_graph), in_tuple)
