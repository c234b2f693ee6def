"""Image transforms on NumPy arrays, each with a single-image ``__call__`` and a vectorised ``batch``.

Layouts: a single image is ``HxW`` or ``HxWxC`` before ``ToTensor`` and ``CxHxW`` after it; a
batch has a leading ``N`` axis. The geometric transforms (``RandomShift``, ``RandomAffine``,
``RandomCrop``) act on the last two axes, so they take ``HxW``/``CxHxW`` images and ``NxHxW``/
``NxCxHxW`` batches; put them before ``Normalize`` so that ``fill=0`` is the background.
Transforms return NumPy arrays; ``DataLoader`` turns batches into Tensors.

Random transforms draw from their own ``numpy.random.Generator``. When none is given, one is
seeded from ``td.default_generator()`` at construction, so ``td.manual_seed(s)`` before building
the pipeline makes augmentation reproducible, even when a prefetch thread runs it.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..tensor import default_generator

__all__ = [
    "Transform",
    "Compose",
    "ToTensor",
    "Normalize",
    "RandomShift",
    "RandomAffine",
    "RandomCrop",
    "apply_batch",
]


def _array(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _generator(generator) -> np.random.Generator:
    if generator is None:
        return np.random.default_rng(int(default_generator().integers(2**63)))
    if isinstance(generator, (int, np.integer)):
        return np.random.default_rng(int(generator))
    return generator


def apply_batch(transform, batch: np.ndarray) -> np.ndarray:
    """Apply ``transform`` to a stacked batch: its ``batch`` method if any, else item by item."""
    if transform is None:
        return batch
    batched = getattr(transform, "batch", None)
    if batched is not None:
        return batched(batch)
    return np.stack([_array(transform(x)) for x in batch])


class Transform:
    """Base class: ``__call__(image)`` on one image, ``batch(images)`` on a stacked batch."""

    def __call__(self, x):
        return self.batch(_array(x)[None])[0]

    def batch(self, x):
        return np.stack([self(item) for item in x])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator")
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def batch(self, x):
        for t in self.transforms:
            x = apply_batch(t, x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


def _to_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return np.divide(x, np.float32(255), dtype=np.float32)
    return x.astype(np.float32)


class ToTensor(Transform):
    """uint8 ``HxW`` or ``HxWxC`` -> float32 ``CxHxW`` in [0, 1]; batches ``NxHxW`` -> ``Nx1xHxW``
    and ``NxHxWxC`` -> ``NxCxHxW``. uint8 is divided by 255; other dtypes are only cast."""

    def __call__(self, x):
        x = _array(x)
        if x.ndim == 2:
            x = x[None]
        elif x.ndim == 3:
            x = x.transpose(2, 0, 1)
        else:
            raise ValueError(f"ToTensor: expected an HxW or HxWxC image, got shape {x.shape}")
        return np.ascontiguousarray(_to_float(x))

    def batch(self, x):
        x = _array(x)
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        else:
            raise ValueError(f"ToTensor.batch: expected NxHxW or NxHxWxC, got shape {x.shape}")
        return np.ascontiguousarray(_to_float(x))


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel of ``CxHxW`` images or ``NxCxHxW`` batches."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: mean {self.mean} and std {self.std} differ in length")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def _apply(self, x, channel_axis):
        x = _to_float(_array(x)) if _array(x).dtype.kind != "f" else _array(x)
        n_channels = x.shape[channel_axis]
        if len(self.mean) not in (1, n_channels):
            raise ValueError(
                f"Normalize: {len(self.mean)} means for an input with {n_channels} channels "
                f"(shape {x.shape}); give one value or one per channel"
            )
        shape = (-1,) + (1,) * (x.ndim - channel_axis - 1)
        mean = np.asarray(self.mean, x.dtype).reshape(shape)
        inv_std = (1.0 / np.asarray(self.std, np.float64)).astype(x.dtype).reshape(shape)
        # NOTE: in place on one new array; ``(x - mean) * inv_std`` with two broadcast operands
        # measured ten times slower (NumPy 2.x).
        out = np.subtract(x, mean)
        np.multiply(out, inv_std, out=out)
        return out

    def __call__(self, x):
        if _array(x).ndim != 3:
            raise ValueError(f"Normalize: expected a CxHxW image, got shape {_array(x).shape}")
        return self._apply(x, 0)

    def batch(self, x):
        if _array(x).ndim != 4:
            raise ValueError(f"Normalize.batch: expected NxCxHxW, got shape {_array(x).shape}")
        return self._apply(x, 1)


# -- geometric transforms: sampling by index arrays, vectorised over the batch -----------------


def _as_nchw(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim < 3:
        raise ValueError(f"{name}.batch: expected NxHxW or NxCxHxW, got shape {x.shape}")
    return x.reshape(x.shape[0], -1, *x.shape[-2:])


class _Padded:
    """A batch (N, C, H, W) flattened with a border of ``fill`` (1 pixel before, 2 after) so
    that any index clipped to ``[-1, H] x [-1, W]`` reads either a pixel or ``fill``, and the
    bilinear neighbour ``+1`` of such an index stays inside too."""

    def __init__(self, x4: np.ndarray, fill, dtype):
        n, c, h, w = x4.shape
        padded = np.full((n, c, h + 3, w + 3), fill, dtype=dtype)
        padded[:, :, 1 : h + 1, 1 : w + 1] = x4
        self.flat = padded.reshape(-1)
        self.n, self.c, self.h, self.w, self.wp = n, c, h, w, w + 3
        self.base = (np.arange(n * c, dtype=np.int64) * ((h + 3) * (w + 3))).reshape(n, c, 1)

    def offsets(self, ys: np.ndarray, xs: np.ndarray, clip: bool = True) -> np.ndarray:
        """Flat offsets (N, C, ...) of integer points ``ys``, ``xs`` (N, ...), broadcast
        together and the same for every channel. ``clip`` sends out-of-range points to the
        border; without it the points must already lie in ``[-1, H] x [-1, W]`` and ``ys`` is
        overwritten."""
        if clip:
            ys, xs = np.clip(ys, -1, self.h), np.clip(xs, -1, self.w)
        ys += 1
        ys *= self.wp
        if ys.shape == np.broadcast_shapes(ys.shape, xs.shape):
            ys += xs
        else:
            ys = ys + xs
        ys += 1
        ys = ys[:, None]
        base = self.base.reshape(self.n, self.c, *([1] * (ys.ndim - 2)))
        if self.c == 1:
            ys += base
            return ys
        return ys + base

    def take(self, offsets: np.ndarray) -> np.ndarray:
        return self.flat.take(offsets)


def _gather_separable(x4, rows, cols, fill):
    """``out[n, c, i, j] = x4[n, c, rows[n, i], cols[n, j]]``, ``fill`` where out of range."""
    src = _Padded(x4, fill, x4.dtype)
    return src.take(src.offsets(rows[:, :, None], cols[:, None, :]))


def _affine_map(coef: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """``coef[:, 0] * x + coef[:, 1] * y + coef[:, 2]`` for each image (row of ``coef``)."""
    coef = coef.astype(np.float32)
    out = np.multiply(coef[:, :1], xx)
    out += np.multiply(coef[:, 1:2], yy)
    out += coef[:, 2:]
    return out


def _pair(value, name, arg) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 0 for v in pair):
        raise ValueError(
            f"{name}: {arg} must be a non-negative int or a pair of them, got {value!r}"
        )
    return int(pair[0]), int(pair[1])


class RandomShift(Transform):
    """Translate each image by whole pixels, ``dy, dx`` uniform in ``[-max_shift, max_shift]``;
    uncovered pixels get ``fill``."""

    def __init__(self, max_shift: int, fill=0, generator=None):
        if int(max_shift) != max_shift or max_shift < 0:
            raise ValueError(f"RandomShift: max_shift must be a non-negative int, got {max_shift}")
        self.max_shift = int(max_shift)
        self.fill = fill
        self.generator = _generator(generator)

    def batch(self, x):
        x = _array(x)
        x4 = _as_nchw(x, "RandomShift")
        n, _, h, w = x4.shape
        m = self.max_shift
        dy, dx = self.generator.integers(-m, m + 1, size=(2, n, 1))
        out = _gather_separable(x4, np.arange(h) - dy, np.arange(w) - dx, self.fill)
        return out.reshape(x.shape)


class RandomCrop(Transform):
    """Pad by ``padding`` pixels of ``fill`` on each side, then crop ``size`` at a random place."""

    def __init__(self, size, padding=0, fill=0, generator=None):
        self.size = _pair(size, "RandomCrop", "size")
        self.padding = _pair(padding, "RandomCrop", "padding")
        self.fill = fill
        self.generator = _generator(generator)

    def batch(self, x):
        x = _array(x)
        x4 = _as_nchw(x, "RandomCrop")
        n, _, h, w = x4.shape
        (ch, cw), (py, px) = self.size, self.padding
        if ch > h + 2 * py or cw > w + 2 * px:
            raise ValueError(
                f"RandomCrop: crop size {self.size} is larger than the padded image "
                f"({h + 2 * py}, {w + 2 * px}); lower size or raise padding"
            )
        oy = self.generator.integers(0, h + 2 * py - ch + 1, size=(n, 1)) - py
        ox = self.generator.integers(0, w + 2 * px - cw + 1, size=(n, 1)) - px
        out = _gather_separable(x4, oy + np.arange(ch), ox + np.arange(cw), self.fill)
        return out.reshape(*x.shape[:-2], ch, cw)


class RandomAffine(Transform):
    """Random rotation (``degrees``, counter-clockwise on screen), translation (``translate``:
    fractions of width and height) and optional ``scale`` about the image centre.

    Each output pixel is sampled from the input by the inverse map, ``bilinear`` or ``nearest``;
    pixels that map outside get ``fill``. Integer images are rounded back to their dtype.
    """

    def __init__(
        self, degrees, translate=None, scale=None, fill=0, interpolation="bilinear", generator=None
    ):
        deg = (-abs(degrees), abs(degrees)) if np.isscalar(degrees) else tuple(degrees)
        if len(deg) != 2 or deg[0] > deg[1]:
            raise ValueError(
                f"RandomAffine: degrees must be a number or (min, max), got {degrees!r}"
            )
        if translate is not None and (
            len(translate) != 2 or not all(0 <= t <= 1 for t in translate)
        ):
            raise ValueError(
                f"RandomAffine: translate must be two fractions in [0, 1], got {translate!r}"
            )
        if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
            raise ValueError(
                f"RandomAffine: scale must be (min, max) with 0 < min <= max, got {scale!r}"
            )
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"RandomAffine: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}"
            )
        self.degrees = (float(deg[0]), float(deg[1]))
        self.translate = None if translate is None else tuple(float(t) for t in translate)
        self.scale = None if scale is None else tuple(float(s) for s in scale)
        self.fill = fill
        self.interpolation = interpolation
        self.generator = _generator(generator)

    def _source_points(self, n, h, w):
        """Input coordinates (N, H*W), float32, that each output pixel reads from."""
        g = self.generator
        theta = np.deg2rad(g.uniform(*self.degrees, size=n))
        tx = ty = np.zeros(n)
        if self.translate is not None:
            tx = g.uniform(-1, 1, size=n) * self.translate[0] * w
            ty = g.uniform(-1, 1, size=n) * self.translate[1] * h
        s = np.ones(n) if self.scale is None else g.uniform(*self.scale, size=n)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        # NOTE: with y pointing down, a counter-clockwise turn on screen is R(-theta) in (x, y);
        # the inverse map that sampling needs is R(+theta) / s about the centre, less the
        # translation: src = R(theta) (p - c - t) / s + c, one affine map of (x, y) per image.
        cos, sin = np.cos(theta) / s, np.sin(theta) / s
        coef_x = np.stack([cos, -sin, cx - cos * (cx + tx) + sin * (cy + ty)], axis=1)
        coef_y = np.stack([sin, cos, cy - sin * (cx + tx) - cos * (cy + ty)], axis=1)
        xx = np.tile(np.arange(w, dtype=np.float32), h)
        yy = np.repeat(np.arange(h, dtype=np.float32), w)
        return _affine_map(coef_y, xx, yy), _affine_map(coef_x, xx, yy)

    def batch(self, x):
        x = _array(x)
        x4 = _as_nchw(x, "RandomAffine")
        n, c, h, w = x4.shape
        dtype = x4.dtype if x4.dtype.kind == "f" else np.dtype(np.float32)
        src = _Padded(x4, self.fill, dtype)
        src_y, src_x = self._source_points(n, h, w)
        # Clipping to the border first keeps far-away points on fill, at valid indices.
        np.clip(src_y, -1, h, out=src_y)
        np.clip(src_x, -1, w, out=src_x)
        if self.interpolation == "nearest":
            ys = np.floor(src_y + 0.5).astype(np.int64)
            xs = np.floor(src_x + 0.5).astype(np.int64)
            out = src.take(src.offsets(ys, xs, clip=False))
        else:
            y0, x0 = np.floor(src_y), np.floor(src_x)
            wy = np.subtract(src_y, y0, out=src_y).astype(dtype, copy=False)[:, None, :]
            wx = np.subtract(src_x, x0, out=src_x).astype(dtype, copy=False)[:, None, :]
            off = src.offsets(y0.astype(np.int64), x0.astype(np.int64), clip=False)
            buf = np.empty_like(off)

            def at(step):
                return src.take(np.add(off, step, out=buf))

            # NOTE: in-place updates on few arrays: fresh large arrays cost page faults that
            # dominate this loop-free code (measured 3x slower written as one expression).
            top = src.take(off)
            right = at(1)
            right -= top
            right *= wx
            top += right
            bottom = at(src.wp)
            right = at(src.wp + 1)
            right -= bottom
            right *= wx
            bottom += right
            bottom -= top
            bottom *= wy
            out = top
            out += bottom
        out = out.reshape(n, c, h, w)
        if x.dtype.kind in "iub":
            info = np.iinfo(x.dtype) if x.dtype.kind != "b" else None
            out = np.rint(out)
            if info is not None:
                out = np.clip(out, info.min, info.max)
        return out.astype(x.dtype, copy=False).reshape(x.shape)
