"""``ImageFolder``: a folder of class sub-folders of PNG/JPEG images, read with Pillow.

This is the only module of tinydl that imports Pillow (lazily, on first image read), part of the
``data`` extra: ``pip install 'tinydl[data]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .dataset import Dataset
from .errors import DatasetError, DatasetNotFoundError
from .transforms import apply_batch

__all__ = ["ImageFolder", "HAVE_PIL", "load_image"]

HAVE_PIL = importlib.util.find_spec("PIL") is not None
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _pil_image():
    if not HAVE_PIL:
        raise ImportError(
            "ImageFolder: reading images needs Pillow; install it with pip install 'tinydl[data]'"
        )
    from PIL import Image

    return Image


def load_image(path, mode: str | None = None, size=None) -> np.ndarray:
    """Read an image file as a uint8 array: ``HxW`` for grayscale, ``HxWx3`` for colour.

    ``mode=None`` keeps grayscale images (Pillow modes ``1``, ``L``, ``I``, ``I;16``, ``F``)
    grayscale and turns all others (``RGB``, ``RGBA``, palette, ``CMYK``, ...) into RGB,
    dropping alpha; ``mode="L"`` or ``mode="RGB"`` forces one of the two. ``size=(height,
    width)`` resizes to exactly that (bilinear, antialiased when shrinking; the aspect ratio is
    not kept), as torchvision's ``Resize((h, w))``.
    """
    image_mod = _pil_image()
    try:
        with image_mod.open(path) as img:
            target = mode or ("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            img = img.convert(target)
            if size is not None:
                img = img.resize((int(size[1]), int(size[0])), image_mod.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the image ({exc})") from None


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
