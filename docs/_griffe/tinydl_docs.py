"""A Griffe extension for tinydl's API reference (loaded by mkdocs.yml); docs only.

1. Fence bare doctest blocks as ``pycon`` code.
tinydl's docstrings (NumPy style) put ``>>>`` examples in the description text as well as in
``Examples`` sections. Griffe only treats the latter as code; elsewhere Markdown would read
``>>> x`` as nested block quotes and ``ds[1][1]`` as a reference link (a warning under
``--strict``). This wraps every doctest block outside a fence in a fenced ``pycon`` block and
trims ``# doctest:`` directives, as mkdocstrings does for ``Examples`` sections. It changes only
what the docs show; the source docstrings (and ``python -m doctest``) are untouched.

2. Leave special members (``__repr__``, ``__setattr__``, ``__slots__``, ``__enter__``,
   ``__version__`` ...) out of the reference: ``filters: public`` in mkdocs.yml honours each
   module's ``__all__`` but counts dunders as public, and a ``public = False`` set on the object
   does not reach the aliases through which re-exported classes (``tinydl.layers.Module``) are
   shown, so they are dropped from the loaded tree instead. Kept: ``__init__`` (merged into the
   class) and the container protocol (``__getitem__``, ``__len__``, ``__iter__``) that a
   ``Dataset`` subclass implements.

3. Show the signature of an ``__init__`` made by ``tinydl.optim.optimizer.with_defaults``
   (``AdamW.__init__ = with_defaults(Adam.__init__, weight_decay=1e-2)``): the docs read the
   source without running it, so the base's parameters are copied with the new defaults.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_FLAG = re.compile(r"\s*#\s*doctest:.*$")


def fence_doctests(text: str) -> str:
    """Return ``text`` with each run of ``>>>`` lines (plus ``...`` continuations and the
    expected output, up to the next blank line) wrapped in a fenced ``pycon`` block."""
    lines = text.split("\n")
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(_FLAG.sub("", lines[i]))
            i += 1
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```pycon")
        out.extend(block)
        out.append(f"{indent}```")
    return "\n".join(out)


_KEEP = {"__init__", "__getitem__", "__len__", "__iter__"}


def is_hidden_special(name: str) -> bool:
    """``__name__``-style names, except those in ``_KEEP``."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__") and name not in _KEEP


def _with_defaults_signature(cls: griffe.Class) -> None:
    init = cls.members.get("__init__")
    call = getattr(init, "value", None)
    if not isinstance(call, griffe.ExprCall) or str(call.function) != "with_defaults":
        return
    target, *keywords = call.arguments
    base = cls.parent.members.get(str(target).split(".")[0])
    base_init = base.members.get("__init__") if base is not None else None
    if not isinstance(base_init, griffe.Function):
        return
    defaults = {k.name: k.value for k in keywords if isinstance(k, griffe.ExprKeyword)}
    params = griffe.Parameters(
        *(
            griffe.Parameter(p.name, annotation=p.annotation, kind=p.kind,
                             default=defaults.get(p.name, p.default))
            for p in base_init.parameters
        )
    )
    cls.set_member("__init__", griffe.Function("__init__", parameters=params, lineno=init.lineno,
                                               endlineno=init.endlineno))


class TinydlDocs(griffe.Extension):
    """Adjust objects as they are loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)

    def on_members(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        for name in [n for n in obj.members if is_hidden_special(n)]:
            obj.del_member(name)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack = [pkg]
        while stack:
            obj = stack.pop()
            for member in obj.members.values():
                if member.is_alias:
                    continue
                if member.is_class:
                    _with_defaults_signature(member)
                if member.is_module or member.is_class:
                    stack.append(member)
