"""Sequential and ModuleList."""

from __future__ import annotations

from collections import OrderedDict

from .hooks import has_hooks
from .module import Module

__all__ = ["Sequential", "ModuleList"]


class Sequential(Module):
    """Modules applied in order: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 2))`` or from an
    ``OrderedDict`` of named modules.

    A module with a ``fused_with(next_module)`` method may run itself and the module after it
    as one op (``BatchNorm`` then ``ReLU``: ``F.batch_norm_relu``): the same numbers, fewer
    passes over memory. Neither module may have hooks then: with a hook on either, both run
    one by one as before, so the hooks see the intermediate output. The modules and their
    names (the state-dict keys) stay as they are.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def add_module(self, name: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {name!r} is a {type(module).__name__}, not a Module")
        super().add_module(name, module)

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            fused = _fused(m, mods[i + 1]) if i + 1 < len(mods) else None
            x, i = (fused(x), i + 2) if fused is not None else (m(x), i + 1)
        return x

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def _fused(m: Module, nxt: Module):
    """``m`` and ``nxt`` as one callable (``m.fused_with(nxt)``), or None; never with hooks."""
    fuse = getattr(m, "fused_with", None)
    if fuse is None or has_hooks(m) or has_hooks(nxt):
        return None
    return fuse(nxt)


class ModuleList(Module):
    """A list of modules whose parameters are registered (no ``forward`` of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: cannot append a {type(module).__name__}")
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        return ModuleList(mods[idx]) if isinstance(idx, slice) else mods[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
