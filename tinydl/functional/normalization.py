"""Normalization: batch_norm (training and eval, running statistics) and layer_norm."""

from __future__ import annotations

__all__ = []
