"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, hyper_parameters

__all__ = ["SGD", "sgd_update"]


def sgd_update(
    param,
    grad,
    momentum_buffer,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    work: tuple,
):
    """One SGD step on arrays, in place on ``param`` and ``momentum_buffer``.

    With ``g = ±grad + weight_decay * param``::

        buf = g                                  (first step)
        buf = momentum * buf + (1 - dampening) * g
        param -= lr * (g + momentum * buf if nesterov else buf)

    Parameters
    ----------
    param, grad : array
        The parameter (updated in place) and its gradient (left alone).
    momentum_buffer : array or None
        The velocity from the last step, None on the first step.
    work : tuple of two arrays
        Scratch space shaped like ``param``.

    Returns
    -------
    array or None
        The momentum buffer (a new array on the first step), None without momentum.
    """
    w0, w1 = work
    d_p = grad
    if weight_decay != 0:
        np.multiply(param, weight_decay, out=w0)
        (np.subtract if maximize else np.add)(w0, grad, out=w0)
        d_p = w0
    elif maximize:
        d_p = np.negative(grad, out=w0)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = d_p.astype(param.dtype, copy=True)
        else:
            momentum_buffer *= momentum
            if dampening == 0:
                momentum_buffer += d_p
            else:
                momentum_buffer += np.multiply(d_p, 1 - dampening, out=w1)
        if nesterov:
            np.multiply(momentum_buffer, momentum, out=w1)
            d_p = np.add(d_p, w1, out=w1)
        else:
            d_p = momentum_buffer
    param += np.multiply(d_p, -lr, out=w1)
    return momentum_buffer if momentum != 0 else None


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch's ``torch.optim.SGD`` update, step for step).

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters or parameter groups.
    lr : float
        Learning rate (>= 0).
    momentum : float
        Momentum factor (>= 0); 0 is plain SGD.
    dampening : float
        Dampening of the gradient's contribution to the momentum.
    weight_decay : float
        L2 penalty added to the gradient.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    maximize : bool
        Ascend instead of descend.

    Examples
    --------
    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)  # doctest: +SKIP
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, hyper_parameters(locals()))

    def _check(self, group: dict) -> None:
        self._require_nonnegative(group, "lr", "momentum", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{type(self).__name__}: nesterov=True needs momentum > 0 and dampening == 0, got momentum="
                f"{group['momentum']!r} and dampening={group['dampening']!r}; set momentum "
                "(e.g. 0.9) and dampening=0, or nesterov=False"
            )

    def _update(self, p, grad, state: dict, group: dict) -> None:
        # NOTE: no state to set up: the momentum buffer is a copy of the first step's gradient.
        buf = self._run(sgd_update, p, grad, group, state.get("momentum_buffer"))
        if buf is not None:
            state["momentum_buffer"] = buf
