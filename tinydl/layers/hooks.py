"""Module hooks: forward pre-hooks, forward hooks and full backward hooks, as in PyTorch.

``Module.__call__`` runs, in order: the forward pre-hooks (which may replace the positional
arguments), the input side of the backward hooks, ``forward``, the forward hooks (which may
replace the output) and the output side of the backward hooks.

The full backward hook is built from an identity ``Function`` on each side of the module, as
PyTorch's ``BackwardHook``: the one on the outputs records ``grad_output`` when the engine reaches
it; the one on the inputs receives the gradients with respect to the module's tensor inputs, calls
the hooks with ``(module, grad_input, grad_output)`` and passes on what they return.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict

from ..autograd import Function, Tensor
from ..errors import BackwardError
from ..grad_mode import is_grad_enabled

__all__ = ["RemovableHandle"]

_ids = itertools.count()

# NOTE: Module.__call__ reads these names directly (its fast path). The stores are created on
# first registration, so a module without hooks carries none and calls straight to forward
FORWARD_PRE, FORWARD, BACKWARD = "_forward_pre_hooks", "_forward_hooks", "_backward_hooks"


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods: ``remove()`` unregisters the hook (a second
    call does nothing); as a context manager it removes the hook on leaving the block::

        with model.register_forward_hook(show):
            model(x)          # show runs
        model(x)              # it does not
    """

    def __init__(self, hooks: OrderedDict):
        self.id = next(_ids)
        # NOTE: a weak reference, so a forgotten handle does not keep a deleted module's hooks
        self._hooks = weakref.ref(hooks)

    def remove(self) -> None:
        hooks = self._hooks()
        if hooks is not None:
            hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def add_hook(module, store: str, hook, prepend: bool = False, **flags) -> RemovableHandle:
    if not callable(hook):
        raise TypeError(f"{store[1:-1]}: the hook must be callable, got {type(hook).__name__}")
    hooks = module.__dict__.get(store)
    if hooks is None:
        hooks = OrderedDict()
        object.__setattr__(module, store, hooks)
    handle = RemovableHandle(hooks)
    hooks[handle.id] = (hook, flags)
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def has_hooks(module) -> bool:
    """Whether ``module`` has forward, forward-pre or backward hooks (then it must be called
    through ``Module.__call__``, not fused with a neighbour)."""
    d = module.__dict__
    return bool(d.get(FORWARD_PRE) or d.get(FORWARD) or d.get(BACKWARD))


def call_with_hooks(module, args: tuple, kwargs: dict):
    """``module(*args, **kwargs)`` with its hooks (the slow path of ``Module.__call__``)."""
    d = module.__dict__
    for hook, flags in list((d.get(FORWARD_PRE) or {}).values()):
        if flags.get("with_kwargs"):
            result = hook(module, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise TypeError(
                        "forward pre-hook with with_kwargs=True must return None or a tuple "
                        f"(args, kwargs), got {type(result).__name__}"
                    )
                args, kwargs = result
        else:
            result = hook(module, args)
            if result is not None:
                args = result
        args = args if isinstance(args, tuple) else (args,)
    # NOTE: the backward hooks in place now are the ones this call reports to, even if a handle
    # is removed before backward (PyTorch takes the same snapshot)
    backward = [h for h, _ in (d.get(BACKWARD) or {}).values()]
    state = _BackwardState(module, backward, len(args)) if backward else None
    if state is not None:
        args = state.wrap_inputs(args)
    output = module.forward(*args, **kwargs)
    for hook, flags in list((d.get(FORWARD) or {}).values()):
        if flags.get("with_kwargs"):
            result = hook(module, args, kwargs, output)
        else:
            result = hook(module, args, output)
        if result is not None:
            output = result
    if state is not None:
        output = state.wrap_outputs(output)
    return output


class _Identity(Function):
    """Identity on several tensors whose backward calls back into a ``_BackwardState``."""

    @staticmethod
    def forward(ctx, callback, *arrays):
        ctx.callback = callback
        ctx.set_materialize_grads(False)  # an input that got no gradient stays None
        return tuple(arrays)

    @staticmethod
    def backward(ctx, *grads):
        return (None, *ctx.callback(grads))


class _BackwardState:
    """One call of one module: where its tensor inputs sit and the ``grad_output`` it got.

    ``grad_input`` has one entry per positional argument and ``grad_output`` one per output
    (one for a single tensor): ``None`` for a non-tensor, for a tensor that does not require
    grad and for one that received no gradient, as in PyTorch."""

    def __init__(self, module, hooks, n_inputs: int):
        self.module, self.hooks, self.n_inputs = module, hooks, n_inputs
        self.input_index = None  # positions of the wrapped inputs; None: no input needs grad
        self.grad_output = None

    def wrap_inputs(self, args: tuple) -> tuple:
        idx = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not idx or not is_grad_enabled():
            return args
        self.input_index = idx
        wrapped = _as_tuple(_Identity.apply(self._on_grad_input, *(args[i] for i in idx)))
        args = list(args)
        for i, t in zip(idx, wrapped):
            args[i] = t
        return tuple(args)

    def wrap_outputs(self, output):
        single = isinstance(output, Tensor)
        outs = (output,) if single else output
        if not isinstance(outs, (tuple, list)) or not is_grad_enabled():
            return output
        idx = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad]
        if not idx:
            return output
        n = len(outs)
        wrapped = _as_tuple(
            _Identity.apply(lambda g: self._on_grad_output(g, idx, n), *(outs[i] for i in idx))
        )
        new = list(outs)
        for i, t in zip(idx, wrapped):
            new[i] = t
        return new[0] if single else type(outs)(new)

    def _on_grad_output(self, grads, idx, n):
        self.grad_output = _spread(grads, idx, n)
        if self.input_index is None:
            # no input needs grad: the hooks run now, with grad_input all None
            grad_input = (None,) * self.n_inputs
            for hook in self.hooks:
                result = hook(self.module, grad_input, self.grad_output)
                if result is not None and any(g is not None for g in result):
                    raise BackwardError(
                        f"full backward hook of {type(self.module).__name__}: no input requires "
                        "grad, so the hook must return None (or only Nones)"
                    )
        return grads

    def _on_grad_input(self, grads):
        grad_input = _spread(grads, self.input_index, self.n_inputs)
        grad_output = self.grad_output or (None,)
        for hook in self.hooks:
            result = hook(self.module, grad_input, grad_output)
            if result is None:
                continue
            result = _as_tuple(result)
            if len(result) != self.n_inputs:
                raise BackwardError(
                    f"full backward hook of {type(self.module).__name__} returned "
                    f"{len(result)} gradients for {self.n_inputs} inputs"
                )
            grad_input = result
        return tuple(grad_input[i] for i in self.input_index)


def _spread(grads, idx, n) -> tuple:
    """The gradients of the wrapped positions ``idx``, placed in a tuple of ``n`` (None elsewhere)."""
    out = [None] * n
    for i, g in zip(idx, grads):
        out[i] = g
    return tuple(out)


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)
