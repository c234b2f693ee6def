"""Convolution: conv2d through im2col/col2im Functions whose backwards are each other."""

from __future__ import annotations

__all__ = []
