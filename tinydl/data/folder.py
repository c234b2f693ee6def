"""``ImageFolder``: a folder of class sub-folders of PNG/JPEG images, read with Pillow.

This is the only module of tinydl that imports Pillow (lazily, on first image read), part of the
``data`` extra: ``pip install 'tinydl[data]'``.
"""

from __future__ import annotations

import importlib.util
import io
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import ImageTooLargeError
from .dataset import Dataset
from .errors import DatasetError, DatasetNotFoundError
from .transforms import apply_batch

__all__ = ["ImageFolder", "HAVE_PIL", "load_image", "read_gray", "IMAGE_SUFFIXES"]

HAVE_PIL = importlib.util.find_spec("PIL") is not None
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg")
# what `tinydl predict` takes from a folder
IMAGE_SUFFIXES = IMG_EXTENSIONS + (".bmp", ".gif", ".tif", ".tiff", ".webp")


def _pil_image():
    if not HAVE_PIL:
        raise ImportError(
            "ImageFolder: reading images needs Pillow; install it with pip install 'tinydl[data]'"
        )
    from PIL import Image

    return Image


# NOTE: the decoded image (before any reduction) may take at most this many bytes; Pillow's
# own bomb limit (179 M pixels) would let a 4-byte RGBA PNG take 716 MB
MAX_DECODED_BYTES = 160 * 2**20
WORK_SIDE = 1024  # the longest side large images are reduced to for ``read_gray``
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2}


def _name_of(source, name) -> str:
    if name is not None:
        return str(name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<image bytes>"
    return str(getattr(source, "name", source))


def _too_large(name: str, pixels: int, size=None) -> ImageTooLargeError:
    dims = f"{size[0]}x{size[1]}, " if size else ""
    return ImageTooLargeError(
        f"{name}: the image is too large to decode ({dims}{pixels:,} pixels; the limit is "
        f"{MAX_DECODED_BYTES // 2**20} MB decoded, e.g. {MAX_DECODED_BYTES:,} grayscale pixels)"
    )


def _open_reduced(image_mod, img, name: str, mode, max_side):
    """Draft (JPEG: scaled while decoding), refuse what would not fit, decode, reduce."""
    target = mode or ("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img.draft(target, (max(1, int(img.size[0] * scale)), max(1, int(img.size[1] * scale))))
    pixels = img.size[0] * img.size[1]
    if pixels * _BYTES_PER_PIXEL.get(img.mode, 4) > MAX_DECODED_BYTES:
        raise _too_large(name, pixels, img.size)
    img.load()
    factor = 1 if max_side is None else -(-max(img.size) // max_side)
    if factor > 1:  # integer box reduction in C on the 8-bit image, before any float copy
        img = img if img.mode in ("L", "LA", "RGB", "RGBA") else img.convert(target)
        img = img.reduce(factor)
    return img.convert(target)


def load_image(path, mode: str | None = None, size=None, *, max_side=None, name=None):
    """Read an image as a uint8 array: ``HxW`` for grayscale, ``HxWx3`` for colour.

    ``path`` is a file path, the encoded bytes or a binary file object (``name`` names it in
    errors). ``mode=None`` keeps grayscale images (Pillow modes ``1``, ``L``, ``I``, ``I;16``,
    ``F``) grayscale and turns all others (``RGB``, ``RGBA``, palette, ``CMYK``, ...) into RGB,
    dropping alpha; ``mode="L"`` or ``mode="RGB"`` forces one of the two. ``size=(height,
    width)`` resizes to exactly that (bilinear, antialiased when shrinking; the aspect ratio is
    not kept), as torchvision's ``Resize((h, w))``. ``max_side`` shrinks larger images (by an
    integer factor, so the longest side is at most ``max_side``) while and right after decoding.

    An image that would take more than ``MAX_DECODED_BYTES`` to decode raises
    ``ImageTooLargeError`` naming it and its pixel count; an unreadable one ``DatasetError``.
    """
    image_mod = _pil_image()
    label = _name_of(path, name)
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = io.BytesIO(path)
    if size is not None and max_side is None:
        # NOTE: images up to WORK_SIDE resize exactly as before; larger ones are first reduced
        # to at least 4x the size, and bilinear (antialiased) does the rest
        max_side = max(WORK_SIDE, 4 * max(int(n) for n in size))
    try:
        # NOTE: Pillow warns between 89 M and 179 M pixels; the byte limit above decides
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
            with image_mod.open(path) as img:
                img = _open_reduced(image_mod, img, label, mode, max_side)
                if size is not None:
                    img = img.resize((int(size[1]), int(size[0])), image_mod.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
    except image_mod.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(label, int(found.group(1)) if found else 0) from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, ImageTooLargeError):
            raise
        raise DatasetError(f"{label}: cannot read the image ({exc})") from None


def read_gray(source, name=None, max_side: int = WORK_SIDE) -> np.ndarray:
    """Any image (path, bytes or binary file) as float32 grayscale in [0, 1], large ones
    reduced to ``max_side`` on decoding: what ``tinydl.digits.prepare_digit`` takes."""
    return load_image(source, "L", max_side=max_side, name=name).astype(np.float32) / 255.0


class ImageFolder(Dataset):
    """Images in ``root/<class name>/*.png|jpg|jpeg``; the classes sorted by name get 0, 1, ...

    Parameters
    ----------
    root : str or os.PathLike
    transform, target_transform : callable, optional
    mode : {None, "L", "RGB"}
        Colour handling, see ``load_image``: by default grayscale files give ``HxW`` arrays and
        colour files ``HxWx3``; pass ``"L"`` or ``"RGB"`` to make every image alike.
    extensions : tuple of str
        File suffixes taken (case-insensitive).
    size : (int, int), optional
        ``(height, width)`` every image is resized to on reading (see ``load_image``), so that
        images of any size batch together.

    Attributes
    ----------
    classes : list of str
    class_to_idx : dict of str to int
    samples : list of (pathlib.Path, int)
    targets : numpy.ndarray (int64)
    """

    def __init__(
        self,
        root,
        transform=None,
        target_transform=None,
        mode=None,
        extensions=IMG_EXTENSIONS,
        size=None,
    ):
        if mode not in (None, "L", "RGB"):
            raise ValueError(f"ImageFolder: mode must be None, 'L' or 'RGB', got {mode!r}")
        if size is not None and (len(size) != 2 or min(int(n) for n in size) < 1):
            raise ValueError(f"ImageFolder: size must be (height, width) > 0, got {size!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"ImageFolder: {self.root} is not a folder")
        exts = tuple(e.lower() for e in extensions)
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [
            (path, self.class_to_idx[c])
            for c in self.classes
            for path in sorted((self.root / c).rglob("*"))
            if path.is_file() and path.suffix.lower() in exts
        ]
        if not self.samples:
            raise DatasetError(
                f"ImageFolder: no images ({', '.join(exts)}) in class sub-folders of {self.root} "
                f"(found sub-folders: {self.classes or 'none'}); expected root/<class>/<image>"
            )
        self.targets = np.array([t for _, t in self.samples], dtype=np.int64)
        self.transform = transform
        self.target_transform = target_transform
        self.mode = mode
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        image = load_image(path, self.mode, self.size)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def get_batch(self, indices) -> tuple:
        images = [load_image(self.samples[int(i)][0], self.mode, self.size) for i in indices]
        if len({im.shape for im in images}) == 1:
            batch = apply_batch(self.transform, np.stack(images))
        else:  # sizes differ: transform one by one (e.g. a crop) before stacking
            batch = [im if self.transform is None else self.transform(im) for im in images]
            if len({np.shape(im) for im in batch}) != 1:
                raise ValueError(
                    f"ImageFolder: images of one batch differ in shape "
                    f"{sorted({np.shape(im) for im in batch})}; add a transform that gives "
                    f"them one size, or use batch_size=1"
                )
            batch = np.stack(batch)
        targets = apply_batch(self.target_transform, self.targets[np.asarray(indices)])
        return batch, targets

    def __repr__(self) -> str:
        return f"ImageFolder(root={str(self.root)!r}, n={len(self)}, classes={self.classes})"
