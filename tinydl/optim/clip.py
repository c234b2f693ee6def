"""Gradient clipping, in place on the parameters' ``.grad`` arrays (``torch.nn.utils`` names)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module
from ..errors import TinydlError

__all__ = ["clip_grad_norm_", "clip_grad_value_", "NonFiniteGradError"]


class NonFiniteGradError(TinydlError, RuntimeError):
    """The total gradient norm is nan or inf and ``error_if_nonfinite=True`` was asked for."""


def _grads(parameters: Tensor | Iterable[Tensor]) -> list:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad.data for p in params if p.grad is not None]


def _vector_norm(x, ord: float):
    """The ``ord``-norm of all elements of ``x`` as a 0-d array of ``x``'s dtype."""
    xp = get_array_module(x)
    x = xp.abs(x.ravel())
    if x.size == 0:
        return xp.zeros((), x.dtype)
    if ord == math.inf:
        out = x.max()
    elif ord == -math.inf:
        out = x.min()
    elif ord == 0:
        out = xp.count_nonzero(x)
    elif ord == 1:
        out = x.sum()
    elif ord == 2:
        out = xp.sqrt(xp.dot(x, x))
    else:
        out = xp.sum(x**ord) ** (1.0 / ord)
    return xp.asarray(out, dtype=x.dtype)


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale the gradients together so that their joint norm is at most ``max_norm``.

    The norm is taken over all gradients as if concatenated into one vector; when it exceeds
    ``max_norm`` every gradient is multiplied by ``max_norm / (norm + 1e-6)``.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
        Tensors whose ``.grad`` to clip (those without a gradient are skipped).
    max_norm : float
        The largest norm allowed.
    norm_type : float
        Order of the norm; ``math.inf`` for the largest absolute value.
    error_if_nonfinite : bool
        Raise ``NonFiniteGradError`` when the norm is nan or inf (instead of scaling by nan).

    Returns
    -------
    Tensor
        The total norm before clipping (0-d), for logging.
    """
    max_norm, norm_type = float(max_norm), float(norm_type)
    grads = _grads(parameters)
    if not grads:
        return Tensor(np.zeros((), np.float32))
    xp = get_array_module(grads[0])
    norms = [_vector_norm(g, norm_type) for g in grads]
    dtype = np.result_type(*[n.dtype for n in norms])
    total = _vector_norm(xp.stack([n.astype(dtype) for n in norms]), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise NonFiniteGradError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{float(total)}; find the nan/inf (a loss that overflowed, a log of 0), or pass "
            "error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)  # in the norm's dtype, as PyTorch
    # NOTE: always multiplied, by min(coef, 1) as PyTorch: deciding whether to skip would read
    # coef back to the host (a GPU sync every step), and multiplying by exactly 1.0 changes no
    # bit. A nan coefficient propagates (minimum keeps nan).
    coef = xp.minimum(coef, 1.0)
    with np.errstate(invalid="ignore"):  # inf * 0 -> nan, as PyTorch gives, unwarned
        for g in grads:
            g *= coef
    return Tensor(total)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``, in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp = get_array_module(g)
        xp.clip(g, -clip_value, clip_value, out=g)
