"""``Module``: parameters, buffers and sub-modules registered on attribute assignment."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from ..autograd import Tensor
from ..backend import as_array, get_device, transfer
from ..errors import SerializationError
from ..tensor import Parameter
from ..tensor_methods import parse_to_args
from . import hooks as _hooks
from .hooks import RemovableHandle

__all__ = ["Module", "StateDictError"]


class StateDictError(SerializationError, KeyError):
    """A state dict that does not fit the model: missing, unexpected or wrongly-shaped keys.

    A ``SerializationError`` (loading a checkpoint into the wrong model is a failed load) and a
    ``KeyError`` (as PyTorch's ``load_state_dict``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of layers and models. Assigning a ``Parameter`` or a ``Module`` to an attribute
    registers it; ``register_buffer`` keeps state that is saved but not trained (running stats).

    >>> class Affine(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = Parameter(td.ones(3))
    ...     def forward(self, x):
    ...         return x * self.w
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ----------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        for store in (self._parameters, self._buffers, self._modules):
            if name in store and not (store is self._buffers and _is_buffer_value(value)):
                del store[name]
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Keep ``tensor`` with the module (moved by ``to``, saved in ``state_dict`` when
        ``persistent``) without training it."""
        if not _is_buffer_value(tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None")
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    # -- calling ---------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        d = self.__dict__  # NOTE: inlined, not a call: this runs for every module call
        if d.get("_forward_pre_hooks") or d.get("_forward_hooks") or d.get("_backward_hooks"):
            return _hooks.call_with_hooks(self, args, kwargs)
        return self.forward(*args, **kwargs)

    # -- hooks (tinydl/layers/hooks.py) -------------------------------------------------------
    def register_forward_pre_hook(
        self, hook, *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """``hook(module, args) -> None | new args`` runs before ``forward``; ``args`` is the
        tuple of positional arguments, and a returned value replaces it (a non-tuple is wrapped
        in one). With ``with_kwargs`` it is ``hook(module, args, kwargs) -> None | (args,
        kwargs)``. Hooks run in registration order (``prepend`` puts this one first)."""
        return _hooks.add_hook(self, _hooks.FORWARD_PRE, hook, prepend, with_kwargs=with_kwargs)

    def register_forward_hook(
        self, hook, *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """``hook(module, args, output) -> None | new output`` runs after ``forward``; a returned
        value replaces the output. With ``with_kwargs`` it is ``hook(module, args, kwargs,
        output)``. Hooks run in registration order (``prepend`` puts this one first).

        >>> seen = []
        >>> with model.register_forward_hook(lambda m, a, out: seen.append(out.shape)):
        ...     model(x)
        """
        return _hooks.add_hook(self, _hooks.FORWARD, hook, prepend, with_kwargs=with_kwargs)

    def register_full_backward_hook(self, hook, *, prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_input, grad_output) -> None | new grad_input`` runs when the
        gradients with respect to the module's inputs are computed.

        ``grad_input`` has one entry per positional argument of the call, ``grad_output`` one per
        output (one for a single tensor); an entry is ``None`` for a non-tensor, a tensor that
        does not require grad, or one that got no gradient. A returned tuple (same length as
        ``grad_input``) replaces the gradients passed on to the inputs. When no input requires
        grad the hook runs once ``grad_output`` is known, with ``grad_input`` all ``None``, and
        must return ``None``. The hooks registered when the module is called are the ones that
        run for that call (as in PyTorch); a module called twice reports each call."""
        return _hooks.add_hook(self, _hooks.BACKWARD, hook, prepend)

    # -- traversal -------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, each once, depth first."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            children = [
                (f"{name}.{k}" if name else k, m) for k, m in mod._modules.items() if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return ((k, m) for k, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def _named_members(self, attr: str, recurse: bool):
        seen = set()
        mods = self.named_modules() if recurse else [("", self)]
        for prefix, mod in mods:
            for k, v in getattr(mod, attr).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (f"{prefix}.{k}" if prefix else k), v

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse))

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def apply(self, fn) -> Module:
        """``fn(m)`` on every sub-module, then on this one: children first (post-order, as
        PyTorch, so ``Sequential(a, b).apply(f)`` calls ``f`` on ``a``'s children, ``a``, then
        ``b``)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- modes and gradients ----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Parameters and persistent buffers by dotted name, as detached tensors (shared data)."""
        out = OrderedDict()
        for prefix, mod in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for k, p in mod._parameters.items():
                if p is not None:
                    out[dot + k] = p.detach()
            for k, b in mod._buffers.items():
                if b is not None and k not in mod._non_persistent:
                    out[dot + k] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing arrays (so optimizers keep their references).

        With ``strict`` a missing, unexpected or wrongly-shaped key raises ``StateDictError``
        listing all of them; without it, fitting keys load and the rest are returned."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = []
        for k, target in own.items():
            if k in state_dict:
                raw = _raw(state_dict[k])
                shape = tuple(raw.shape if hasattr(raw, "shape") else np.shape(raw))
                if shape != target.shape:
                    wrong.append(f"{k}: checkpoint {shape} vs model {target.shape}")
        if wrong or (strict and (missing or unexpected)):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(unexpected))
            if wrong:
                parts.append("wrong shapes: " + "; ".join(wrong))
            raise StateDictError(
                f"load_state_dict: the state dict does not fit {type(self).__name__} ("
                + " | ".join(parts)
                + ")"
            )
        for k, target in own.items():
            if k in state_dict:
                value = _raw(state_dict[k])
                if type(value) is not type(target.data):  # NumPy <-> CuPy, lists, numbers
                    value = transfer(as_array(value), get_device(target.data))
                target.data[...] = value.astype(target.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    def to(self, *args, device=None, dtype=None) -> Module:
        """Move and/or cast every parameter and buffer in place, keeping the same objects
        (integer buffers such as counters keep their dtype)."""
        device, dtype = parse_to_args(args, device, dtype)
        for t in list(self.parameters()) + list(self.buffers()):
            cast = dtype if t.dtype.kind == "f" else None
            t.data = t.detach().to(device=device, dtype=cast).data
            if t.grad is not None:
                t.grad = t.grad.to(device=device, dtype=cast)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # -- printing ----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({k}): " + _indent(repr(m)) for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


def _is_buffer_value(value) -> bool:
    return value is None or isinstance(value, Tensor)


def _raw(value):
    return value.data if isinstance(value, Tensor) else value
