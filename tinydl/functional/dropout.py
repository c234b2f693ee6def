"""Dropout with an explicit training flag and generator."""

from __future__ import annotations

__all__ = []
