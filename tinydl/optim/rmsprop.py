"""RMSprop (Hinton's lecture 6e), with momentum and the centered variant (Graves, 2013)."""

from __future__ import annotations

import numpy as np

from .adam import lerp_
from .optimizer import Optimizer, eps_divide, hyper_parameters

__all__ = ["RMSprop", "rmsprop_update"]


def rmsprop_update(
    param,
    grad,
    square_avg,
    grad_avg,
    momentum_buffer,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    work: tuple,
) -> None:
    """One RMSprop step on arrays, in place on ``param`` and the state arrays.

    With ``g = ±grad + weight_decay * param``::

        v = alpha * v + (1 - alpha) * g * g
        a = alpha * a + (1 - alpha) * g              (centered)
        d = sqrt(v - a * a if centered else v) + eps
        buf = momentum * buf + g / d; param -= lr * buf     (momentum > 0)
        param -= lr * g / d                                  (otherwise)

    ``grad_avg`` is None unless ``centered``, ``momentum_buffer`` None unless ``momentum > 0``.
    ``work`` is two scratch arrays shaped like ``param``.
    """
    w0, w1 = work
    g = grad
    if weight_decay != 0:
        np.multiply(param, weight_decay, out=w0)
        g = (np.subtract if maximize else np.add)(w0, grad, out=w0)
    elif maximize:
        g = np.negative(grad, out=w0)
    square_avg *= alpha
    np.multiply(g, 1 - alpha, out=w1)
    square_avg += np.multiply(w1, g, out=w1)
    if centered:
        lerp_(grad_avg, g, 1 - alpha, w1)
        np.multiply(grad_avg, grad_avg, out=w1)
        avg = np.subtract(square_avg, w1, out=w1)
        np.sqrt(avg, out=avg)
    else:
        avg = np.sqrt(square_avg, out=w1)
    avg += eps
    step = eps_divide(g, avg, eps)
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += step
        step = np.multiply(momentum_buffer, -lr, out=w1)
    else:
        step *= -lr
    param += step


class RMSprop(Optimizer):
    """RMSprop, PyTorch's ``torch.optim.RMSprop`` update step for step.

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters or parameter groups.
    lr : float
        Learning rate (>= 0).
    alpha : float
        Smoothing constant of the squared-gradient average (>= 0).
    eps : float
        Added to the denominator for stability (>= 0).
    weight_decay : float
        L2 penalty added to the gradient (>= 0).
    momentum : float
        Momentum factor (>= 0).
    centered : bool
        Normalize by an estimate of the gradient's variance instead of its second moment.
    maximize : bool
        Ascend instead of descend.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, hyper_parameters(locals()))

    def _check(self, group: dict) -> None:
        self._require_nonnegative(group, "lr", "eps", "alpha", "momentum", "weight_decay")

    def _init_state(self, p, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["square_avg"] = self._full_like(p)
        # NOTE: created on first need, so that momentum or centering switched on later
        # (OneCycleLR cycles the momentum) starts from zero instead of failing.
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = self._full_like(p)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = self._full_like(p)

    def _update(self, p, grad, state: dict, group: dict) -> None:
        averages = state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer")
        self._run(rmsprop_update, p, grad, group, *averages)
