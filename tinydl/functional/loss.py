"""Losses: cross_entropy, nll_loss, mse_loss, l1_loss, binary_cross_entropy_with_logits; one_hot."""

from __future__ import annotations

__all__ = []
