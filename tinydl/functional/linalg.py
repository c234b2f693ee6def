"""Linear algebra for layers: linear (x @ W.T + b)."""

from __future__ import annotations

__all__ = []
