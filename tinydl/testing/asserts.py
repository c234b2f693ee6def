"""Assertions on tensors and gradients."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..autograd import Tensor, grad
from ..backend import to_numpy
from ..gradcheck import gradcheck, gradgradcheck

__all__ = ["assert_close", "assert_grad_close", "assert_grads_match"]


def _array(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().data
    return to_numpy(x)


def assert_close(actual, expected, rtol: float = 1e-7, atol: float = 0.0, msg: str = ""):
    """``actual`` equals ``expected`` (tensors or arrays) in shape and within tolerance."""
    a, e = _array(actual), _array(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{msg}shape {a.shape} != expected {e.shape}")
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=msg, equal_nan=True)


def assert_grad_close(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    second_order: bool = False,
):
    """``fn``'s gradients (and, with ``second_order``, second derivatives) match central
    differences in float64; raises ``GradcheckError`` naming the input and element otherwise."""
    gradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol)
    if second_order:
        gradgradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol)


def _named_params(params) -> dict:
    # NOTE: duck-typed on ``named_parameters`` so a Module works without importing the layers
    # (testing sits below them in the import order).
    if hasattr(params, "named_parameters"):
        return dict(params.named_parameters())
    if isinstance(params, Mapping):
        return dict(params)
    raise TypeError(
        "assert_grads_match: params must be a mapping of names to Tensors or a Module, "
        f"got {type(params).__name__}"
    )


def _worst(name: str, manual: np.ndarray, auto: np.ndarray, rtol: float, atol: float):
    """``None`` when ``manual`` matches ``auto``, else a line describing the worst element."""
    if manual.shape != auto.shape:
        return f"  {name}: manual gradient has shape {manual.shape}, autograd's {auto.shape}"
    diff = np.abs(manual - auto)
    bad = ~np.isclose(manual, auto, rtol=rtol, atol=atol)
    if not bad.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nan_to_num(diff / (atol + rtol * np.abs(auto)), nan=np.inf)
    excess = np.where(bad, ratio, -1.0)
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), manual.shape))
    return (
        f"  {name}: {int(bad.sum())} of {bad.size} elements differ; worst at index {idx}: "
        f"manual {float(manual[idx])!r} vs autograd {float(auto[idx])!r} "
        f"(|diff| {diff[idx]:.3g} > atol + rtol * |autograd| = {atol + rtol * abs(auto[idx]):.3g})"
    )


def assert_grads_match(
    manual_grads: Mapping,
    params,
    loss: Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    strict: bool = True,
) -> dict[str, float]:
    """Hand-written gradients equal tinydl's autograd gradients of ``loss``.

    Runs ``td.grad(loss, params)`` (the graph is retained and ``.grad`` left untouched) and
    compares each named gradient elementwise, in float64, as ``|manual - autograd| <= atol +
    rtol * |autograd|``. A parameter that ``loss`` does not depend on has a zero gradient.

    Parameters
    ----------
    manual_grads : mapping of str to array or Tensor
        The gradients to check, by parameter name.
    params : mapping of str to Tensor, or a Module
        The parameters ``loss`` was computed from (a Module gives ``named_parameters()``).
    loss : Tensor
        A scalar that depends on ``params``.
    rtol, atol : float
        Relative and absolute tolerance.
    strict : bool
        Every parameter must have a manual gradient; with False, only those named are checked.

    Returns
    -------
    dict
        The largest absolute difference per parameter name.

    Raises
    ------
    AssertionError
        Naming each mismatching parameter, its worst element and both values, or the names that
        are missing from either side.

    Examples
    --------
    >>> import numpy as np, tinydl as td
    >>> from tinydl.testing import assert_grads_match
    >>> w = td.tensor([1.0, -2.0], requires_grad=True)
    >>> diffs = assert_grads_match({"w": np.array([2.0, -4.0])}, {"w": w}, (w * w).sum())
    """
    named = _named_params(params)
    unknown = sorted(set(manual_grads) - set(named))
    unchecked = sorted(set(named) - set(manual_grads)) if strict else []
    if unknown or unchecked:
        parts = ([f"no parameter named {', '.join(unknown)}"] if unknown else []) + (
            [f"no manual gradient for {', '.join(unchecked)} (pass strict=False to skip)"]
            if unchecked
            else []
        )
        raise AssertionError("assert_grads_match: " + "; ".join(parts))
    names = list(manual_grads)
    for name in names:
        if not (isinstance(named[name], Tensor) and named[name].requires_grad):
            raise ValueError(
                f"assert_grads_match: parameter {name!r} is not a Tensor that "
                "requires grad; create it with requires_grad=True"
            )
    found = grad(loss, [named[n] for n in names], retain_graph=True, allow_unused=True)
    failures, diffs = [], {}
    for name, g in zip(names, found):
        manual = _array(manual_grads[name]).astype(np.float64)
        auto = np.zeros(named[name].shape) if g is None else _array(g).astype(np.float64)
        line = _worst(name, manual, auto, rtol, atol)
        if line:
            failures.append(line)
        else:
            diffs[name] = float(np.abs(manual - auto).max(initial=0.0))
    if failures:
        raise AssertionError(
            f"assert_grads_match: {len(failures)} of {len(names)} gradients differ from "
            f"autograd (rtol={rtol}, atol={atol}):\n" + "\n".join(failures)
        )
    return diffs
