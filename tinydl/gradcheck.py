"""Gradient checking: analytic gradients against float64 central differences.

``gradcheck`` projects every output on a fixed random direction ``v`` and compares
``v^T J`` from one backward pass with the same product from central differences, element by
element of every input. On failure it raises ``GradcheckError`` naming the input, the worst
element and both values, and it re-runs each op of the function alone to name the first one
whose own backward is wrong.
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, grad, record_ops
from .backend import get_array_module, to_numpy
from .errors import DTypeError, GradcheckError
from .grad_mode import enable_grad, no_grad

__all__ = ["gradcheck", "gradgradcheck"]


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _float_outputs(out) -> list[Tensor]:
    return [o for o in _as_tuple(out) if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _directions(outputs, seed: int) -> list:
    """One random direction per output, drawn on the host (the same on every device) and put
    on the output's device."""
    rng = np.random.default_rng(seed)
    return [
        get_array_module(o.data).asarray(rng.standard_normal(o.shape).astype(o.dtype))
        for o in outputs
    ]


def _projection(fn, inputs, vs) -> float:
    """``sum_k v_k . out_k`` in float64, summed on the outputs' device; one number comes back."""
    outs = _float_outputs(fn(*inputs))
    return sum(float(to_numpy((o.data.astype(np.float64) * v).sum())) for o, v in zip(outs, vs))


def _check(fn, inputs, eps, atol, rtol, seed):
    """Return None when gradients agree, else (input index, message)."""
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad; pass tensors with requires_grad=True")
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise DTypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; central differences need "
                "float64 inputs (call .double() on them)"
            )
    with enable_grad():
        outputs = _float_outputs(fn(*inputs))
    if not outputs:
        raise ValueError("gradcheck: the function returned no floating-point tensor")
    vs = _directions(outputs, seed)
    live = [(o, v) for o, v in zip(outputs, vs) if o.requires_grad]
    analytic = [None] * len(diff)
    if live:
        analytic = grad(
            [o for o, _ in live],
            [inputs[i] for i in diff],
            grad_outputs=[Tensor.from_array(v) for _, v in live],
            allow_unused=True,
        )
    for k, i in enumerate(diff):
        x = inputs[i].data
        numeric = np.zeros(x.shape, np.float64)
        flat, nflat = x.reshape(-1), numeric.reshape(-1)
        if flat.base is None and x.size:  # reshape copied: x is non-contiguous
            raise ValueError(f"gradcheck: input {i} must be contiguous (call .reshape or copy)")
        with no_grad():
            for j in range(x.size):
                orig = flat[j]
                flat[j] = orig + eps
                plus = _projection(fn, inputs, vs)
                flat[j] = orig - eps
                minus = _projection(fn, inputs, vs)
                flat[j] = orig
                nflat[j] = (plus - minus) / (2 * eps)
        a = (
            np.zeros_like(numeric)
            if analytic[k] is None
            else to_numpy(analytic[k].data).astype(np.float64)
        )
        close = np.isclose(a, numeric, rtol=rtol, atol=atol, equal_nan=True)
        if not close.all():
            excess = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
            excess = np.where(close, -np.inf, np.nan_to_num(excess, nan=np.inf))
            j = np.unravel_index(int(np.argmax(excess)), x.shape)
            return i, (
                f"gradient of input {i} (shape {x.shape}) disagrees at index {tuple(int(n) for n in j)}: "
                f"analytic {a[j]:.8g}, numeric {numeric[j]:.8g} (atol={atol}, rtol={rtol})"
            )
    return None


def _first_bad_op(fn, inputs, eps, atol, rtol, seed) -> str | None:
    """Re-run ``fn`` recording every op, then gradcheck each op alone on its own inputs."""
    with enable_grad(), record_ops() as calls:
        fn(*inputs)
    for n, (cls, args, kwargs) in enumerate(calls):
        local = [
            Tensor(a.data.astype(np.float64), requires_grad=a.dtype.kind == "f")
            if isinstance(a, Tensor) and a.dtype.kind == "f"
            else a
            for a in args
        ]
        if not any(isinstance(a, Tensor) and a.requires_grad for a in local):
            continue
        pos = [i for i, a in enumerate(local) if isinstance(a, Tensor)]

        def op(*ts, _cls=cls, _local=local, _pos=pos, _kw=kwargs):
            full = list(_local)
            for p, t in zip(_pos, ts):
                full[p] = t
            return _cls.apply(*full, **_kw)

        try:
            bad = _check(op, [local[p] for p in pos], eps, atol, rtol, seed)
        except (ValueError, DTypeError):
            continue
        if bad is not None:
            shapes = ", ".join(str(local[p].shape) for p in pos)
            return f"op #{n} {cls.__name__} (inputs of shapes {shapes}): {bad[1]}"
    return None


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    locate: bool = True,
) -> bool:
    """Check ``fn``'s gradients against central differences; raise ``GradcheckError`` if wrong.

    ``inputs`` is a tensor or a sequence; those with ``requires_grad=True`` (float64) are checked.

    >>> x = td.randn(3, dtype=td.float64, requires_grad=True)
    >>> td.gradcheck(lambda t: (t * t).sum(), x)
    True
    """
    inputs = _as_tuple(inputs)
    bad = _check(fn, inputs, eps, atol, rtol, seed)
    if bad is None:
        return True
    message = f"gradcheck: {bad[1]}"
    if locate:
        culprit = _first_bad_op(fn, inputs, eps, atol, rtol, seed)
        message += (
            f"\n  first op whose own backward is wrong: {culprit}"
            if culprit
            else "\n  every op passes alone: look at how the ops are combined"
        )
    raise GradcheckError(message)


def gradgradcheck(
    fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0
) -> bool:
    """Check second derivatives: ``gradcheck`` of ``x -> v^T J(x)`` (built with ``create_graph``)."""
    inputs = _as_tuple(inputs)
    if not any(isinstance(t, Tensor) and t.requires_grad for t in inputs):
        raise ValueError("gradgradcheck: no input requires grad")

    def first_derivative(*xs):
        with enable_grad():
            outs = [o for o in _float_outputs(fn(*xs)) if o.requires_grad]
            vs = _directions(outs, seed + 1)
            wrt = [t for t in xs if isinstance(t, Tensor) and t.requires_grad]
            grads = grad(
                outs,
                wrt,
                grad_outputs=[Tensor.from_array(v) for v in vs],
                create_graph=True,
                allow_unused=True,
            )
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivative, inputs, eps, atol, rtol, seed, locate=False)
