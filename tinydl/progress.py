"""Progress bars: tqdm when installed (the only module importing it), else a quiet stand-in."""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["progress_bar", "HAVE_TQDM"]

HAVE_TQDM = importlib.util.find_spec("tqdm") is not None


class _Plain:
    """Iterates without drawing; ``set_postfix`` keeps the last values for the caller's log."""

    disable = True  # as tqdm's attribute: nothing is drawn, so callers may skip the postfix

    def __init__(self, iterable, desc: str):
        self.iterable, self.desc, self.postfix = iterable, desc, {}

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **values):
        self.postfix = values

    def close(self):
        pass


def progress_bar(iterable, desc: str = "", enabled: bool | None = None):
    """A tqdm bar on a terminal (``enabled=None``: only when stderr is a TTY), else ``_Plain``."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not (enabled and HAVE_TQDM):
        return _Plain(iterable, desc)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="batch", leave=True, dynamic_ncols=True)
