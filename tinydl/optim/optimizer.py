"""The ``Optimizer`` base: parameter groups, per-parameter state, ``zero_grad``, state dicts.

Subclasses (``SGD``, ``Adam``, ...) hold only a constructor whose signature states each
hyper-parameter and its default once (``hyper_parameters(locals())`` makes the defaults dict of
it), a ``_check`` of the hyper-parameters of one group, an ``_init_state`` that creates a
parameter's state, and an ``_update`` that hands the state arrays to a plain update function over
arrays (``sgd_update``, ``adam_update``, ...) through ``Optimizer._run``, which passes each
hyper-parameter by the name the update function gives it. The loop over groups and parameters is
``Optimizer.step``. The update functions change the parameter and state arrays in place, so a
parameter's ``.data`` stays the same array for the whole of training.
"""

from __future__ import annotations

import functools
import inspect
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from ..autograd import Tensor, enable_grad, no_grad
from ..backend import get_array_module, is_device_array, kernels, to_numpy
from ..debug import check_retained_graph
from ..errors import ShapeError, TinydlError
from ..profiler import region

__all__ = ["Optimizer", "OptimizerStateError", "require", "hyper_parameters", "with_defaults"]


class OptimizerStateError(TinydlError, ValueError):
    """A state dict that does not fit the optimizer (group count, group sizes, array shapes)."""


def require(ok: bool, owner: str, what: str, value, rule: str) -> None:
    """Raise ``ValueError("SGD: invalid learning rate -0.1; lr must be >= 0")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{owner}: invalid {what} {value!r}; {rule}")


def eps_divide(num, denom, eps: float):
    """``num / denom`` written into ``denom``, a denominator that already holds ``+ eps``.

    Where ``eps`` is 0, or rounds to 0 in the parameter's dtype (float16 flushes 1e-8), a zero
    denominator gives a zero step, the limit of ``0 / eps``, instead of ``0 / 0 = NaN``."""
    if eps > 0 and denom.dtype.type(eps) != 0:  # the common case: every denominator >= eps > 0
        return np.divide(num, denom, out=denom)
    # NOTE: arithmetic instead of ``denom[zero] = 0``: a boolean-mask assignment reads the mask's
    # count back to the host on a GPU. Dividing by 1 there and multiplying by 0 keeps it on device.
    zero = denom == 0
    denom += zero
    np.divide(num, denom, out=denom)
    denom *= ~zero
    return denom


def fused(update: Callable, param, grad) -> Callable:
    """``update`` (``sgd_update``, ``adam_update``, ...) itself, or for CuPy arrays its fused
    CUDA twin with the same arguments (one kernel per parameter instead of about ten)."""
    if not is_device_array(param):
        return update
    return kernels.fused_update(update.__name__, param, grad) or update


def hyper_parameters(arguments: dict) -> dict:
    """The defaults dict of an optimizer from its constructor's ``locals()``: every argument but
    ``self`` and ``params`` (and the ``__class__`` cell that ``super()`` adds), so that the
    signature is the one place that names a hyper-parameter and gives its default."""
    return {k: v for k, v in arguments.items() if k not in ("self", "params", "__class__")}


_Init = TypeVar("_Init", bound=Callable)


def with_defaults(init: _Init, **defaults) -> _Init:
    """``init`` (an optimizer's ``__init__``) with other default values, for a variant that
    differs only in them (``AdamW``: ``Adam`` with ``weight_decay=1e-2``). The parameters stay the
    same, in the same order, positional or keyword, and ``help()`` shows the new defaults."""
    sig = inspect.signature(init)
    unknown = sorted(set(defaults) - set(sig.parameters))
    if unknown:
        raise TypeError(f"with_defaults: {init.__qualname__} has no parameter {unknown}")
    params = [p.replace(default=defaults.get(p.name, p.default)) for p in sig.parameters.values()]
    sig = sig.replace(parameters=params)

    def __init__(self, *args, **kwargs):
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as exc:  # worded as Python words it for a plain __init__
            raise TypeError(f"{type(self).__name__}.__init__() {exc}") from None
        bound.apply_defaults()
        init(*bound.args, **bound.kwargs)

    __init__.__signature__ = sig
    return __init__


@functools.cache
def _keywords(update: Callable) -> frozenset:
    """The keyword-only parameters of an update function (its hyper-parameters)."""
    params = inspect.signature(update).parameters.values()
    return frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY)


# How ``Optimizer._require_nonnegative`` words its message "SGD: invalid <what> <value>; <rule>"
# for a hyper-parameter, as ``(what, rule)``; any other key gives ``(key, "must be >= 0")``.
_NONNEGATIVE_WORDING = {
    "lr": ("learning rate", "lr must be >= 0"),
    "eps": ("epsilon", "eps must be >= 0"),
    "alpha": ("alpha", "alpha must be >= 0"),
}


def _to_numpy(value):
    """A copy of a state value as NumPy (CuPy arrays come back to the host)."""
    if is_device_array(value):
        return to_numpy(value)  # a copy already
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _plain(value):
    """0-d arrays and NumPy scalars (what a checkpoint file gives back) -> Python numbers."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


class Optimizer:
    """Base class of the optimizers.

    Parameters
    ----------
    params : iterable of Tensor, or iterable of dict
        The tensors to optimize, or parameter groups: dicts with a ``"params"`` entry and any
        hyper-parameters that differ from ``defaults`` for that group.
    defaults : dict
        Hyper-parameters of groups that do not set their own.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict] = defaultdict(dict)
        self.param_groups: list[dict] = []
        self._work: dict = {}
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(
                f"{name}: params must be an iterable of Tensors or dicts, got a single Tensor; "
                "wrap it in a list: [tensor]"
            )
        if isinstance(params, set):
            raise TypeError(
                f"{name}: parameters must be given in a fixed order (a list), not a set"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{name}: got an empty parameter list; pass model.parameters()")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (e.g. layers unfrozen during fine-tuning) with its options."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict, got {type(param_group)}")
        params = param_group.get("params")
        if params is None:
            raise ValueError(f"{name}.add_param_group: the group has no 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                f"{name}: parameters must be given in a fixed order (a list), not a set"
            )
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(
                    f"{name}: cannot optimize a non-leaf tensor; optimize the leaf it came "
                    "from, or pass tensor.detach().requires_grad_()"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError(
                f"{name}: a parameter appears more than once (in one group or in two groups); "
                "list each parameter once"
            )
        group = {**self.defaults, **param_group, "params": params}
        self._check(group)
        self.param_groups.append(group)

    def _check(self, group: dict) -> None:
        """Validate one group's hyper-parameters (subclasses raise ``ValueError``)."""

    def _require_nonnegative(self, group: dict, *keys: str) -> None:
        """``require(group[key] >= 0, ...)`` for each of ``keys``, in order."""
        for key in keys:
            what, rule = _NONNEGATIVE_WORDING.get(key, (key, "must be >= 0"))
            require(group[key] >= 0, type(self).__name__, what, group[key], rule)

    # -- stepping ------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set ``.grad`` to None, or (``set_to_none=False``) zero them."""
        with region(self, "zero_grad", "optimizer"):  # a td.profile() row; else a no-op
            self._zero_grad(set_to_none)

    def _zero_grad(self, set_to_none: bool) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad = p.grad.detach()
                    p.grad.data.fill(0)

    @no_grad()
    def step(self, closure: Callable | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given.

        For each such parameter: ``_init_state`` sets up its state, a ``"step"`` count in the
        state (where the optimizer keeps one) goes up by one, then ``_update`` changes it.
        """
        loss = self._closure(closure)
        check_retained_graph(self)  # warns once if past steps' graphs are kept alive
        with region(self, "step", "optimizer"):  # a td.profile() row; else a no-op
            self._step()
        return loss

    def _step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = self._grad(p)
                state = self.state[p]
                self._init_state(p, state, group)
                if "step" in state:
                    state["step"] += 1
                self._update(p, grad, state, group)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        """Fill in ``state`` (empty on the first step) with what ``_update`` needs."""

    def _update(self, p: Tensor, grad, state: dict, group: dict) -> None:
        """Update ``p.data`` in place from the gradient array ``grad`` (subclasses), usually
        one ``self._run(update_function, p, grad, group, *state_arrays)``."""
        raise NotImplementedError

    def _run(self, update: Callable, p: Tensor, grad, group: dict, *arrays, **extra):
        """``update(p.data, grad, *arrays, **hyper, **extra, work=...)``, or its fused CUDA twin.

        ``hyper`` is every entry of ``group`` that ``update`` takes as a keyword-only argument, so
        a hyper-parameter reaches the update under its own name without being listed here;
        ``extra`` gives the others (the step count, values derived from a group entry)."""
        names = _keywords(update)
        hyper = {k: v for k, v in group.items() if k in names}
        step = fused(update, p.data, grad)
        return step(p.data, grad, *arrays, **hyper, **extra, work=self._workspace(p))

    @staticmethod
    def _closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _grad(self, p: Tensor):
        g = p.grad.data
        if g.shape != p.data.shape:
            raise ShapeError(
                f"{type(self).__name__}.step: gradient of shape {g.shape} for a parameter of "
                f"shape {p.data.shape}; assign .grad a tensor of the parameter's shape"
            )
        return g

    def _workspace(self, p: Tensor, n: int = 2) -> tuple:
        """``n`` scratch arrays like ``p.data``, reused across steps and across parameters of
        the same shape (updates run one parameter at a time); not part of the state."""
        key = (p.data.shape, p.data.dtype.str, type(p.data))
        bufs = self._work.get(key)
        if bufs is None or len(bufs) < n:
            xp = get_array_module(p.data)
            bufs = self._work[key] = tuple(xp.empty_like(p.data) for _ in range(n))
        return bufs

    @staticmethod
    def _full_like(p: Tensor, value: float = 0.0):
        """A new state array shaped like ``p.data``, on its device, filled with ``value``."""
        return get_array_module(p.data).full_like(p.data, value)

    # -- state dicts ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{'state': {index: {name: value}}, 'param_groups': [{..., 'params': [indices]}]}``.

        Parameters are numbered in group order, as in PyTorch; arrays are NumPy copies.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {
            index[id(p)]: {k: _to_numpy(v) for k, v in s.items()}
            for p, s in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state saved by ``state_dict`` (from this optimizer class and the same groups)."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise OptimizerStateError(
                f"{name}: expected a dict with 'state' and 'param_groups' "
                "(what Optimizer.state_dict() returns)"
            )
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise OptimizerStateError(
                f"{name}: the optimizer has {len(self.param_groups)} parameter group(s) but the "
                f"state dict has {len(saved_groups)}; build the optimizer with the same groups"
            )
        by_index = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise OptimizerStateError(
                    f"{name}: parameter group {i} has {len(group['params'])} parameter(s) here but "
                    f"{len(saved['params'])} in the state dict; build the optimizer with the "
                    "same model"
                )
            by_index.update({int(k): p for k, p in zip(saved["params"], group["params"])})
        state: defaultdict[Tensor, dict] = defaultdict(dict)
        for key, saved in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise OptimizerStateError(
                    f"{name}: the state dict has state for parameter {key}, which no group lists"
                )
            state[p] = {k: self._restore(name, key, k, v, p) for k, v in saved.items()}
        self.state = state
        self.param_groups = [
            {**{k: _plain(v) for k, v in saved.items() if k != "params"}, "params": g["params"]}
            for saved, g in zip(saved_groups, self.param_groups)
        ]

    @staticmethod
    def _restore(name, key, field, value, p: Tensor):
        value = _plain(value)
        if field == "step":
            return int(value)
        if value is None or np.isscalar(value):
            return value
        value = np.asarray(value) if not hasattr(value, "shape") else value
        if tuple(value.shape) != p.data.shape:
            raise OptimizerStateError(
                f"{name}: state '{field}' of parameter {key} has shape {tuple(value.shape)} but "
                f"the parameter has shape {p.data.shape}; the state dict is for another model"
            )
        xp = get_array_module(p.data)
        return xp.array(value, dtype=p.data.dtype)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines + [")"])
