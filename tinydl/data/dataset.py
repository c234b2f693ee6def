"""Datasets as indexable collections: ``Dataset``, ``TensorDataset``, ``Subset``, ``random_split``.

A dataset may offer ``get_batch(indices)``, returning a tuple of already-stacked NumPy arrays
(transforms applied to the whole batch). ``DataLoader`` uses that fast vectorised path when it
exists and falls back to ``__getitem__`` plus collation otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..autograd import Tensor
from ..tensor import default_generator
from .transforms import apply_batch

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "random_split"]


class Dataset:
    """Base class: subclasses define ``__len__`` and ``__getitem__(i)`` returning one sample."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


def _as_array(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


class TensorDataset(Dataset):
    """Samples are the ``i``-th rows of equally long arrays or Tensors.

    >>> ds = TensorDataset(np.zeros((4, 2)), np.arange(4))
    >>> len(ds), ds[1][1]
    (4, 1)
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: give at least one array")
        self.arrays = tuple(_as_array(a) for a in arrays)
        lengths = [a.shape[0] if a.ndim else None for a in self.arrays]
        if None in lengths or len(set(lengths)) != 1:
            shapes = [a.shape for a in self.arrays]
            raise ValueError(
                f"TensorDataset: arrays must share their first dimension, got {shapes}"
            )

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices) -> tuple:
        indices = np.asarray(indices, dtype=np.int64)
        return tuple(a[indices] for a in self.arrays)


class ArrayDataset(Dataset):
    """Images and targets held in two arrays, with a per-sample and a batched path.

    ``dataset[i]`` is ``(transform(images[i]), target_transform(int(targets[i])))``;
    ``get_batch(indices)`` applies the transforms to the whole stacked batch at once.
    """

    def __init__(self, images, targets, transform=None, target_transform=None):
        self.data = _as_array(images)
        self.targets = _as_array(targets)
        if self.data.shape[:1] != self.targets.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}: {self.data.shape[0]} images but "
                f"{self.targets.shape[0]} targets (shapes {self.data.shape}, {self.targets.shape})"
            )
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index):
        image, target = self.data[index], self.targets[index]
        target = target.item() if target.ndim == 0 else target
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def get_batch(self, indices) -> tuple:
        indices = np.asarray(indices, dtype=np.int64)
        images = apply_batch(self.transform, self.data[indices])
        return images, apply_batch(self.target_transform, self.targets[indices])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        n = len(dataset)
        if self.indices.ndim != 1:
            raise ValueError(
                f"Subset: indices must be one-dimensional, got shape {self.indices.shape}"
            )
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: indices out of range for a dataset of length {n}")

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def __getattr__(self, name):
        # NOTE: only ``get_batch`` is forwarded, and only when the wrapped dataset has it, so
        # ``hasattr(subset, "get_batch")`` tells the loader whether the fast path exists.
        inner = self.__dict__.get("dataset")
        if name == "get_batch" and hasattr(inner, "get_batch"):
            return lambda indices: inner.get_batch(self.indices[np.asarray(indices)])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _split_lengths(lengths: Sequence, n: int) -> list[int]:
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    if all(isinstance(v, (int, np.integer)) for v in lengths):
        if any(v < 0 for v in lengths) or sum(lengths) != n:
            raise ValueError(
                f"random_split: lengths {lengths} must be non-negative and sum to the dataset "
                f"length {n}; or give fractions that sum to 1"
            )
        return [int(v) for v in lengths]
    fracs = [float(v) for v in lengths]
    if any(f < 0 or f > 1 for f in fracs) or not math.isclose(sum(fracs), 1.0, abs_tol=1e-6):
        raise ValueError(f"random_split: fractions {lengths} must lie in [0, 1] and sum to 1")
    counts = [int(math.floor(n * f)) for f in fracs]
    # Hand the remainder out one by one, round-robin, as PyTorch does.
    for i in range(n - sum(counts)):
        counts[i % len(counts)] += 1
    return counts


def random_split(dataset, lengths, generator: np.random.Generator | None = None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random ``Subset``s.

    Parameters
    ----------
    dataset : Dataset
    lengths : sequence of int or float
        Sizes that sum to ``len(dataset)``, or fractions that sum to 1.
    generator : numpy.random.Generator, optional
        Source of the permutation; ``td.default_generator()`` when omitted. The same seed gives
        the same split.
    """
    n = len(dataset)
    counts = _split_lengths(lengths, n)
    gen = generator if generator is not None else default_generator()
    perm = gen.permutation(n)
    bounds = np.cumsum([0, *counts])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
