"""Deployment: turn any photo or scan of one digit into an MNIST-like 28x28 image, and predict.

MNIST digits are white on black, scaled so the longer side of the digit's bounding box is 20
pixels (keeping the aspect ratio, with anti-aliasing), and placed in a 28x28 frame so that their
centre of mass sits at the centre. ``prepare_digit`` does the same to a new image.
"""

from __future__ import annotations

import numpy as np

from .grad_mode import no_grad
from .tensor import tensor

__all__ = ["prepare_digit", "predict_digits", "top_k", "area_resize"]


def _resample_axis(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Box-filter ``a`` to ``n`` samples along ``axis``: each output averages the exact span of
    input it covers (integrating the cumulative sum), so shrinking never aliases."""
    a = np.moveaxis(a, axis, 0)
    m = a.shape[0]
    csum = np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])
    edges = np.linspace(0.0, m, n + 1)
    lo = np.minimum(np.floor(edges).astype(int), m - 1)
    frac = (edges - lo).reshape((-1,) + (1,) * (a.ndim - 1))
    at_edges = csum[lo] + frac * (csum[lo + 1] - csum[lo])
    out = np.diff(at_edges, axis=0) / (m / n)
    return np.moveaxis(out, 0, axis)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a 2-D float image to ``(height, width)`` by area averaging."""
    return _resample_axis(_resample_axis(image, height, 0), width, 1)


def prepare_digit(image: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
    """A grayscale (H, W) or colour (H, W, C) image -> float32 (size, size) in [0, 1], white
    digit on black, fitted into ``box`` pixels and centred by mass as MNIST is."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(
            f"prepare_digit: expected an (H, W) or (H, W, C) image, got shape {np.shape(image)}"
        )
    if img.max() > 1.0:
        img = img / 255.0
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if np.median(border) > 0.5:  # dark digit on a light background: invert
        img, border = 1.0 - img, 1.0 - border
    background = np.median(border)
    span = img.max() - background
    if span <= 1e-6:
        return np.zeros((size, size), np.float32)
    img = np.clip((img - background) / span, 0.0, 1.0)
    rows, cols = np.nonzero(img > 0.2)
    img = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = box / max(img.shape)
    h, w = (max(1, round(n * scale)) for n in img.shape)
    img = area_resize(img, h, w)
    mass = img.sum()
    cy = (img.sum(axis=1) * np.arange(h)).sum() / mass
    cx = (img.sum(axis=0) * np.arange(w)).sum() / mass
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - h))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - w))
    out = np.zeros((size, size), np.float32)
    out[top : top + h, left : left + w] = img
    return out


def predict_digits(model, images, mean: float, std: float, k: int = 3) -> list[list[tuple]]:
    """Top-``k`` (class, probability) pairs for each image (any size; see ``prepare_digit``)."""
    return top_k(model, np.stack([prepare_digit(im) for im in images]), mean, std, k)


def top_k(model, images: np.ndarray, mean: float, std: float, k: int = 3) -> list[list[tuple]]:
    """Top-``k`` (class, probability) pairs for each of the ``(N, H, W)`` images in [0, 1],
    normalised with ``mean`` and ``std`` as in training, in eval mode."""
    x = tensor(((images[:, None] - mean) / std).astype(np.float32))
    model.eval()
    with no_grad():
        probs = model(x).softmax(dim=1).numpy()
    order = np.argsort(-probs, axis=1)[:, :k]
    return [[(int(c), float(p[c])) for c in row] for row, p in zip(order, probs)]
