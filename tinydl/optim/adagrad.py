"""Adagrad (Duchi et al., 2011): per-coordinate learning rates from the sum of squared gradients."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, eps_divide, hyper_parameters

__all__ = ["Adagrad", "adagrad_update"]


def adagrad_update(
    param,
    grad,
    state_sum,
    *,
    step: int,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    work: tuple,
) -> None:
    """One Adagrad step on arrays, in place on ``param`` and ``state_sum``.

    With ``g = ±grad + weight_decay * param``::

        s += g * g
        param -= lr / (1 + (step - 1) * lr_decay) * g / (sqrt(s) + eps)

    ``step`` counts from 1; ``work`` is two scratch arrays shaped like ``param``.
    """
    w0, w1 = work
    g = grad
    if weight_decay != 0:
        np.multiply(param, weight_decay, out=w0)
        g = (np.subtract if maximize else np.add)(w0, grad, out=w0)
    elif maximize:
        g = np.negative(grad, out=w0)
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += np.multiply(g, g, out=w1)
    std = np.sqrt(state_sum, out=w1)
    std += eps
    update = eps_divide(g, std, eps)
    param += np.multiply(update, -clr, out=w1)


class Adagrad(Optimizer):
    """Adagrad, PyTorch's ``torch.optim.Adagrad`` update step for step (dense gradients).

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters or parameter groups.
    lr : float
        Learning rate (>= 0).
    lr_decay : float
        The learning rate of step ``t`` is ``lr / (1 + (t - 1) * lr_decay)`` (>= 0).
    weight_decay : float
        L2 penalty added to the gradient (>= 0).
    initial_accumulator_value : float
        Starting value of the sum of squared gradients (>= 0).
    eps : float
        Added to the denominator for stability (>= 0).
    maximize : bool
        Ascend instead of descend.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, hyper_parameters(locals()))

    def _check(self, group: dict) -> None:
        self._require_nonnegative(
            group, "lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value"
        )

    def _init_state(self, p, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["sum"] = self._full_like(p, group["initial_accumulator_value"])

    def _update(self, p, grad, state: dict, group: dict) -> None:
        self._run(adagrad_update, p, grad, group, state["sum"], step=state["step"])
