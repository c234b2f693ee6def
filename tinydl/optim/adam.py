"""Adam (with the AMSGrad variant) and AdamW (decoupled weight decay)."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, eps_divide, hyper_parameters, require, with_defaults

__all__ = ["Adam", "AdamW", "adam_update", "lerp_"]


def lerp_(start, end, weight: float, work):
    """``start += weight * (end - start)`` in place, rounded as PyTorch's ``lerp_`` does."""
    np.subtract(end, start, out=work)
    if abs(weight) < 0.5:
        start += np.multiply(work, weight, out=work)
    else:
        # NOTE: PyTorch anchors at ``end`` for large weights, so that weight 1 gives ``end``.
        np.multiply(work, 1 - weight, out=work)
        np.subtract(end, work, out=start)
    return start


def adam_update(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
    work: tuple,
) -> None:
    """One Adam step on arrays, in place on ``param`` and the moment arrays.

    With ``g = ±grad (+ weight_decay * param unless decoupled)``::

        param *= 1 - lr * weight_decay              (decoupled: AdamW)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v)                          (amsgrad; v below is vmax)
        param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)

    Parameters
    ----------
    param, grad : array
        The parameter (updated in place) and its gradient (left alone).
    exp_avg, exp_avg_sq, max_exp_avg_sq : array
        First and second moments and (amsgrad only, else None) the running max of the second.
    step : int
        The number of this step, from 1.
    work : tuple of two arrays
        Scratch space shaped like ``param``.
    """
    w0, w1 = work
    g = grad
    if maximize:
        g = np.negative(grad, out=w0)
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            np.multiply(param, weight_decay, out=w1)
            g = np.add(g, w1, out=w0)
    lerp_(exp_avg, g, 1 - beta1, w1)
    exp_avg_sq *= beta2
    np.multiply(g, 1 - beta2, out=w1)
    exp_avg_sq += np.multiply(w1, g, out=w1)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    second = exp_avg_sq
    if amsgrad:
        second = np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    denom = np.sqrt(second, out=w1)
    denom /= bias_correction2_sqrt
    denom += eps
    update = eps_divide(exp_avg, denom, eps)
    param += np.multiply(update, -(lr / bias_correction1), out=w1)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2014), PyTorch's ``torch.optim.Adam`` update step for step.

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters or parameter groups.
    lr : float
        Learning rate (>= 0).
    betas : (float, float)
        Decay rates of the first and second moment averages, each in [0, 1).
    eps : float
        Added to the denominator for stability (>= 0).
    weight_decay : float
        L2 penalty added to the gradient (``AdamW``: decoupled, applied to the parameter).
    amsgrad : bool
        Normalize by the running maximum of the second moment (Reddi et al., 2018).
    maximize : bool
        Ascend instead of descend.
    """

    _decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        betas = tuple(betas)
        super().__init__(params, hyper_parameters(locals()))

    def _check(self, group: dict) -> None:
        name = type(self).__name__
        self._require_nonnegative(group, "lr", "eps")
        betas = group["betas"]
        require(len(betas) == 2, name, "betas", betas, "give two values (beta1, beta2)")
        for i, beta in enumerate(betas):
            require(0 <= beta < 1, name, f"beta at index {i}", beta, "betas must be in [0, 1)")
        self._require_nonnegative(group, "weight_decay")

    def _init_state(self, p, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = self._full_like(p)
            state["exp_avg_sq"] = self._full_like(p)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = self._full_like(p)

    def _update(self, p, grad, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        moments = state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq")
        self._run(
            adam_update, p, grad, group, *moments,
            step=state["step"], beta1=beta1, beta2=beta2, decoupled=self._decoupled,
        )  # fmt: skip


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019): ``torch.optim.AdamW``.

    The parameter shrinks by ``lr * weight_decay`` each step instead of the decay entering the
    gradient moments. Adam's arguments, with a default ``weight_decay`` of 0.01 (as PyTorch).
    """

    _decoupled = True
    __init__ = with_defaults(Adam.__init__, weight_decay=1e-2)
