"""``DistributedSampler``: each rank's disjoint share of a dataset's indices, a new order per epoch."""

from __future__ import annotations

import math

import numpy as np

from . import group

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """The indices of rank ``rank`` out of ``num_replicas``: every ``num_replicas``-th index of
    the epoch's order, starting at ``rank`` (PyTorch's layout).

    The order is ``np.random.default_rng([seed, epoch]).permutation(n)`` when shuffling: the same
    order ``Trainer`` gives a shuffling ``DataLoader`` in that epoch, so ``N`` ranks with batch
    ``b`` see, batch by batch, exactly the images of one process with batch ``N * b``. When
    ``n`` is not a multiple of ``num_replicas``, ``drop_last=False`` repeats the first indices
    to even the shares and ``drop_last=True`` drops the tail. Call ``set_epoch(e)`` before each
    epoch (``Trainer`` does).

    >>> loader = DataLoader(train, 64, sampler=DistributedSampler(train))  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.num_replicas = group.get_world_size() if num_replicas is None else num_replicas
        self.rank = group.get_rank() if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(
                f"DistributedSampler: rank must be in 0..{self.num_replicas - 1}, got {self.rank}"
            )
        self.dataset, self.shuffle, self.seed, self.drop_last = dataset, shuffle, seed, drop_last
        self.epoch = 0
        n = len(dataset)
        share = n // self.num_replicas if drop_last else math.ceil(n / self.num_replicas)
        self.num_samples, self.total_size = share, share * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch."""
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:  # pad by repeating the start (as often as needed)
            order = np.resize(order, self.total_size)
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
