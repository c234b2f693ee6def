"""DataLoader: batching, shuffling, drop_last, collation, prefetch thread."""

import gc
import threading
import time

import numpy as np
import pytest

import tinydl as td
from tinydl.data import ArrayDataset, DataLoader, TensorDataset, default_collate
from tinydl.data import transforms as T


class ItemsOnly:
    """A dataset without ``get_batch``: the loader must collate items."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"item {i} is broken")
        return np.full((2, 2), i, dtype=np.float64), i


def _images(n=10):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, 6, 6), dtype=np.uint8), np.arange(n), T.ToTensor())


@pytest.mark.parametrize("drop_last, sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_sizes_and_len(drop_last, sizes):
    loader = DataLoader(_images(10), batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes) == len(batches)
    assert [b[0].shape[0] for b in batches] == sizes
    x, y = batches[0]
    assert isinstance(x, td.Tensor) and x.data.dtype == np.float32 and x.shape == (4, 1, 6, 6)
    assert y.data.dtype == np.int64
    np.testing.assert_array_equal(y.data, [0, 1, 2, 3])


def test_item_path_collates_into_float32_and_int64():
    loader = DataLoader(ItemsOnly(5), batch_size=2)
    x, y = next(iter(loader))
    assert x.data.dtype == np.float32 and x.shape == (2, 2, 2)
    assert y.data.dtype == np.int64
    np.testing.assert_array_equal(y.data, [0, 1])


def test_default_collate_nested():
    out = default_collate([{"a": (1, 2.0)}, {"a": (3, 4.0)}])
    np.testing.assert_array_equal(out["a"][0].data, [1, 3])
    assert out["a"][1].data.dtype == np.float32


def test_shuffle_reproducible_with_generator():
    ds = TensorDataset(np.arange(50))

    def order(seed):
        loader = DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(seed))
        return np.concatenate([b[0].data for b in loader])

    a, b = order(0), order(0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, np.arange(50))
    np.testing.assert_array_equal(np.sort(a), np.arange(50))
    assert not np.array_equal(a, order(1))


def test_shuffle_new_order_each_epoch():
    loader = DataLoader(
        TensorDataset(np.arange(30)),
        batch_size=30,
        shuffle=True,
        generator=np.random.default_rng(0),
    )
    first, second = (next(iter(loader))[0].data for _ in range(2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("dataset", [_images(37), ItemsOnly(37)], ids=["batched", "items"])
@pytest.mark.parametrize("prefetch", [1, 3])
def test_prefetch_gives_the_same_batches(dataset, prefetch):
    def run(p):
        loader = DataLoader(
            dataset, batch_size=5, shuffle=True, prefetch=p, generator=np.random.default_rng(4)
        )
        return [(x.data, y.data) for x, y in loader]

    plain, fetched = run(0), run(prefetch)
    assert len(plain) == len(fetched) == 8
    for (x0, y0), (x1, y1) in zip(plain, fetched):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)


def test_prefetch_augmentation_reproducible_with_seed():
    def run():
        td.manual_seed(0)
        tf = T.Compose([T.RandomShift(2), T.ToTensor()])
        ds = ArrayDataset(np.arange(20 * 36, dtype=np.uint8).reshape(20, 6, 6), np.arange(20), tf)
        return [x.data for x, _ in DataLoader(ds, batch_size=4, shuffle=True, prefetch=2)]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_worker_exception_is_raised_in_main_thread():
    loader = DataLoader(ItemsOnly(10, fail_at=6), batch_size=2, prefetch=2)
    it = iter(loader)
    assert next(it)[1].data.tolist() == [0, 1]
    with pytest.raises(KeyError, match="item 6 is broken"):
        for _ in it:
            pass
    with pytest.raises(StopIteration):
        next(it)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "tinydl-prefetch"]


def test_dropped_iterator_stops_the_thread():
    before = len(_prefetch_threads())
    loader = DataLoader(ItemsOnly(1000), batch_size=2, prefetch=2)
    it = iter(loader)
    next(it)
    assert len(_prefetch_threads()) == before + 1
    del it
    gc.collect()
    deadline = time.monotonic() + 5
    while len(_prefetch_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_prefetch_threads()) == before


def test_break_out_of_loop_then_iterate_again():
    loader = DataLoader(_images(20), batch_size=3, prefetch=1)
    for _ in loader:
        break
    assert sum(x.shape[0] for x, _ in loader) == 20


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 2.5}, {"prefetch": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="DataLoader"):
        DataLoader(ItemsOnly(3), **kwargs)


def test_prefetch_loads_the_next_batch_while_the_step_runs():
    # No timing: while the consumer still holds batch 0, the worker must already load batch 1.
    next_batch_loaded = threading.Event()

    class Watched(ItemsOnly):
        def __getitem__(self, i):
            if i >= 4:
                next_batch_loaded.set()
            return super().__getitem__(i)

    it = iter(DataLoader(Watched(8), batch_size=4, prefetch=1))
    next(it)
    assert next_batch_loaded.wait(timeout=10), "prefetch did not load ahead"
    next_batch_loaded.clear()
    it = iter(DataLoader(Watched(8), batch_size=4, prefetch=0))
    next(it)
    assert not next_batch_loaded.is_set(), "without prefetch nothing loads ahead"
