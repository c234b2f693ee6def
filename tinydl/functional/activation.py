"""Softmax and log-softmax along a dimension."""

from __future__ import annotations

__all__ = []
