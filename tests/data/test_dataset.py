"""Dataset, TensorDataset, ArrayDataset, Subset and random_split."""

import numpy as np
import pytest

import tinydl as td
from tinydl.data import ArrayDataset, Subset, TensorDataset, random_split
from tinydl.data import transforms as T


def test_tensor_dataset_items_and_batches():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = td.tensor([0, 1, 2, 3, 4, 5])
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[2]
    np.testing.assert_array_equal(xi, [4, 5])
    assert yi == 2
    xb, yb = ds.get_batch([5, 0])
    np.testing.assert_array_equal(xb, x[[5, 0]])
    np.testing.assert_array_equal(yb, [5, 0])


def test_tensor_dataset_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))


def test_array_dataset_batch_path_matches_item_path():
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4), dtype=np.uint8)
    ds = ArrayDataset(
        images, np.arange(5), transform=T.Compose([T.ToTensor(), T.Normalize(0.5, 0.25)])
    )
    xb, yb = ds.get_batch([3, 1])
    items = [ds[3], ds[1]]
    np.testing.assert_allclose(xb, np.stack([items[0][0], items[1][0]]), rtol=1e-6)
    assert [int(v) for v in yb] == [3, 1] == [items[0][1], items[1][1]]
    assert xb.shape == (2, 1, 4, 4) and xb.dtype == np.float32


def test_subset_maps_indices_and_forwards_get_batch():
    ds = TensorDataset(np.arange(10) * 10)
    sub = Subset(ds, [7, 2, 5])
    assert len(sub) == 3 and sub[0][0] == 70
    (batch,) = sub.get_batch([2, 0])
    np.testing.assert_array_equal(batch, [50, 70])

    class NoBatch:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return i

    assert not hasattr(Subset(NoBatch(), [0, 1]), "get_batch")
    with pytest.raises(IndexError):
        Subset(ds, [10])


def test_random_split_is_seeded_and_partitions():
    ds = TensorDataset(np.arange(100))
    a = random_split(ds, [70, 30], generator=np.random.default_rng(1))
    b = random_split(ds, [70, 30], generator=np.random.default_rng(1))
    c = random_split(ds, [70, 30], generator=np.random.default_rng(2))
    assert [len(s) for s in a] == [70, 30]
    np.testing.assert_array_equal(a[0].indices, b[0].indices)
    assert not np.array_equal(a[0].indices, c[0].indices)
    together = np.concatenate([s.indices for s in a])
    np.testing.assert_array_equal(np.sort(together), np.arange(100))


def test_random_split_uses_default_generator():
    ds = TensorDataset(np.arange(50))
    td.manual_seed(3)
    first = random_split(ds, [25, 25])[0].indices
    td.manual_seed(3)
    np.testing.assert_array_equal(random_split(ds, [25, 25])[0].indices, first)


def test_random_split_by_fractions():
    ds = TensorDataset(np.arange(11))
    parts = random_split(ds, [0.5, 0.3, 0.2], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [6, 3, 2]  # floor 5, 3, 2; the leftover goes to the first


@pytest.mark.parametrize("lengths", [[5, 4], [6, 6], [-1, 11], [0.5, 0.6], [], [1.5, -0.5]])
def test_random_split_bad_lengths(lengths):
    with pytest.raises(ValueError, match="random_split"):
        random_split(TensorDataset(np.arange(10)), lengths)
