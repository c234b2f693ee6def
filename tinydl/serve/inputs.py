"""What ``POST /predict`` accepts, checked: JSON pixels and request bodies within limits.

Every refusal is a ``BadInput`` (a ``ValueError``) carrying the HTTP status and a one-line
reason; nothing here needs the web framework.
"""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["BadInput", "pixels_from_json", "MAX_BYTES", "MAX_PIXELS"]

MAX_BYTES = 10 * 2**20  # a phone photo fits; a 50 MB upload does not
MAX_PIXELS = 1024 * 1024  # of a JSON pixel array (one JSON number takes at least 2 bytes)


class BadInput(ValueError):
    """A request the server refuses: ``status`` (4xx) and a one-line reason."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def pixels_from_json(body: bytes) -> np.ndarray:
    """``{"pixels": [[...], ...]}`` -> a float32 ``(H, W)`` image in [0, 1].

    Rows of equal length, any size up to ``MAX_PIXELS``; the values are finite numbers in
    [0, 1], or in [0, 255] (as 8-bit pixels) when any of them is above 1 -- the rule of
    ``tinydl.digits.prepare_digit``."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "pixels" not in data:
        raise BadInput('expected a JSON object {"pixels": [[row], [row], ...]}', 422)
    rows = data["pixels"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise BadInput("pixels must be a non-empty list of rows (lists of numbers)", 422)
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        raise BadInput("pixels: every row must hold the same, non-zero number of values", 422)
    if len(rows) * width > MAX_PIXELS:
        raise BadInput(f"pixels: {len(rows)}x{width} is more than {MAX_PIXELS:,} pixels", 413)
    if not all(_number(v) for r in rows for v in r):
        raise BadInput("pixels must be numbers (no strings, booleans, nulls or lists)", 422)
    if not all(math.isfinite(v) for r in rows for v in r):
        raise BadInput("pixels must be finite numbers (no NaN or infinity)", 422)
    image = np.array(rows, dtype=np.float64)
    if image.min() < 0 or image.max() > 255:
        raise BadInput("pixels must lie in [0, 1] (or in [0, 255] as 8-bit values)", 422)
    if image.max() > 1:
        image = image / 255.0
    return image.astype(np.float32)
