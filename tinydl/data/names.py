"""First names for a character-level language model: the US census lists in the PyPI package
``names`` (``dist.male.first``, ``dist.female.first``; ``pip install names`` or
``tinydl[text]``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .errors import DatasetNotFoundError

__all__ = ["load_names", "NAME_FILES"]

NAME_FILES = ("dist.male.first", "dist.female.first")
_LETTERS = re.compile(r"[a-z]+")


def _package_dir() -> Path:
    # NOTE: find_spec, not import: the package's __init__ would load its last-name list too
    # (a few MB) only to be thrown away; the first-name files sit beside it.
    spec = importlib.util.find_spec("names")
    if spec is None or spec.origin is None:
        raise DatasetNotFoundError(
            "load_names: the first-name lists come from the PyPI package 'names', which is not "
            "installed: pip install names (or pip install 'tinydl[text]')"
        )
    return Path(spec.origin).parent


def load_names() -> list[str]:
    """The distinct first names of both lists: lower case, letters a-z only, sorted.

    Each line of a list is ``NAME  frequency  cumulative  rank``; only the first column is read.
    Raises :class:`DatasetNotFoundError` naming what to install when ``names`` is absent."""
    folder = _package_dir()
    words = set()
    for name in NAME_FILES:
        path = folder / name
        if not path.is_file():
            raise DatasetNotFoundError(
                f"load_names: {path} is missing from the installed 'names' package; reinstall "
                "it: pip install --force-reinstall names"
            )
        for line in path.read_text(encoding="ascii", errors="replace").splitlines():
            fields = line.split()
            if fields and _LETTERS.fullmatch(word := fields[0].lower()):
                words.add(word)
    return sorted(words)
