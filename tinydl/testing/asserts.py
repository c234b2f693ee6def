"""Assertions on tensors and gradients."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..gradcheck import gradcheck, gradgradcheck

__all__ = ["assert_close", "assert_grad_close"]


def _array(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().data
    return x.get() if hasattr(x, "get") else np.asarray(x)


def assert_close(actual, expected, rtol: float = 1e-7, atol: float = 0.0, msg: str = ""):
    """``actual`` equals ``expected`` (tensors or arrays) in shape and within tolerance."""
    a, e = _array(actual), _array(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{msg}shape {a.shape} != expected {e.shape}")
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=msg, equal_nan=True)


def assert_grad_close(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                      second_order: bool = False):
    """``fn``'s gradients (and, with ``second_order``, second derivatives) match central
    differences in float64; raises ``GradcheckError`` naming the input and element otherwise."""
    gradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol)
    if second_order:
        gradgradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol)
