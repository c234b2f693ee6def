"""Reductions: sum, mean, max, min, var, std, logsumexp, prod, argmax, argmin, norm."""

from __future__ import annotations

__all__ = []
