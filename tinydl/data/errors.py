"""Errors of the data package: a malformed file, a dataset that cannot be found or fetched."""

from __future__ import annotations

from ..errors import TinydlError

__all__ = ["DatasetError", "DatasetNotFoundError"]


class DatasetError(TinydlError, ValueError):
    """A dataset file that is truncated or corrupt, or a download that failed its checksum."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset absent from every place searched (the message lists them and how to fix it)."""
