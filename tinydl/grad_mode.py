"""Grad mode: one context variable says whether ops record a graph (``td.no_grad()``)."""

from __future__ import annotations

import contextvars
import functools

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


_grad_enabled = contextvars.ContextVar("tinydl_grad_enabled", default=True)


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


class set_grad_enabled:
    """Context manager and decorator that turns graph recording on or off (one context variable,
    so each thread and each asyncio task has its own mode)."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._tokens = []

    def __enter__(self):
        self._tokens.append(_grad_enabled.set(self.mode))
        return self

    def __exit__(self, *exc):
        _grad_enabled.reset(self._tokens.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)

        return wrapper


class no_grad(set_grad_enabled):
    """``with td.no_grad():`` or ``@td.no_grad()``: record nothing (inference, updates)."""

    def __init__(self):
        self.mode, self._tokens = False, []  # NOTE: no super() call: entered around every step


class enable_grad(set_grad_enabled):
    """``with td.enable_grad():`` records again inside a ``no_grad`` block."""

    def __init__(self):
        super().__init__(True)
