"""Graph bookkeeping of the backward engine that needs no Tensor: dependency counts, the
callbacks a pass runs at its end, hook handles, the zero gradient of an unused output.

Split from ``autograd.py`` (which holds Tensor, Function and the engine's pass) to keep that
file readable; ``autograd`` re-exports ``queue_callback``.
"""

from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .errors import BackwardError

__all__ = ["queue_callback"]

_queues = []  # per running backward pass (they nest when a hook runs one): its callbacks


def queue_callback(fn) -> None:
    """From a hook in ``backward()``: run ``fn()`` once, when the pass has set every ``.grad``."""
    if not _queues:
        raise BackwardError("queue_callback: call it from a hook while backward() runs")
    if fn not in _queues[-1]:  # queued by many hooks, run once
        _queues[-1].append(fn)


def count_dependencies(roots) -> dict:
    """How many edges point at each node reachable from ``roots`` (iterative: no recursion limit)."""
    deps = {}
    stack = list(dict.fromkeys(roots))
    seen = set(stack)
    while stack:
        for edge in stack.pop().edges:
            if type(edge) is tuple:
                child = edge[0]
                if child in deps:
                    deps[child] += 1
                else:
                    deps[child] = 1
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
    return deps


def zeros(shape, dtype, grads):
    """The zero gradient of an output that got none, on the device of the outputs that did."""
    for g in grads:
        if g is not None:
            return get_array_module(g.data).zeros(shape, dtype)
    return np.zeros(shape, dtype)


class HookHandle:
    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)
