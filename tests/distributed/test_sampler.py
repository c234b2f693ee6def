"""DistributedSampler: disjoint shares that cover the dataset, the DataLoader's order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinydl.data import ArrayDataset, DataLoader
from tinydl.distributed import DistributedSampler


def _data(n):
    return ArrayDataset(np.arange(n, dtype=np.float32).reshape(n, 1), np.arange(n))


@given(
    n=st.integers(1, 60), world=st.integers(1, 5), drop_last=st.booleans(), epoch=st.integers(0, 3)
)
def test_shares_are_disjoint_even_and_cover_the_dataset(n, world, drop_last, epoch):
    samplers = [
        DistributedSampler(_data(n), world, r, seed=3, drop_last=drop_last) for r in range(world)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    shares = [list(s) for s in samplers]
    assert len({len(sh) for sh in shares}) == 1 and all(
        len(sh) == len(s) for sh, s in zip(shares, samplers)
    )
    together = [i for sh in shares for i in sh]
    if drop_last:
        assert len(together) == len(set(together)) == n // world * world
    else:  # padded by repeating indices, so every index appears
        assert set(together) == set(range(n))
        assert len(together) == -(-n // world) * world
        if n % world == 0:
            assert len(set(together)) == n


def test_batches_of_the_ranks_make_the_batches_of_one_process():
    n, world, b = 40, 4, 3
    one = DataLoader(_data(n), world * b, shuffle=True, generator=np.random.default_rng([5, 2]))
    ranks = []
    for r in range(world):
        s = DistributedSampler(_data(n), world, r, seed=5)
        s.set_epoch(2)
        ranks.append([y.numpy() for _, y in DataLoader(_data(n), b, sampler=s)])
    for i, (_, y) in enumerate(one):
        assert sorted(np.concatenate([batches[i] for batches in ranks])) == sorted(y.numpy())


def test_epochs_reshuffle_and_shuffle_false_keeps_the_order():
    s = DistributedSampler(_data(20), 2, 0, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    assert list(DistributedSampler(_data(7), 2, 1, shuffle=False)) == [1, 3, 5, 0]


def test_errors():
    with pytest.raises(ValueError, match=r"DistributedSampler: rank must be in 0..1, got 2"):
        DistributedSampler(_data(4), 2, 2)
    with pytest.raises(ValueError, match="DataLoader: sampler and shuffle=True exclude each other"):
        DataLoader(_data(4), 2, shuffle=True, sampler=DistributedSampler(_data(4), 1, 0))
