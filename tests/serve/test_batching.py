"""Micro-batching: concurrent callers share model runs and each gets its own answer."""

import threading
import time

import pytest

from tinydl.serve import Batcher


def _callers(batcher, items):
    results, start = {}, threading.Barrier(len(items))

    def call(i):
        start.wait()
        try:
            results[i] = batcher(items[i])
        except Exception as exc:  # recorded for the test to inspect
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_calls_are_batched_and_answered_in_order():
    running = threading.Lock()

    def slow_square(xs):
        assert running.acquire(blocking=False), "two batches ran at once"
        time.sleep(0.05)
        running.release()
        return [x * x for x in xs]

    batcher = Batcher(slow_square, max_batch=8)
    results = _callers(batcher, list(range(20)))
    assert results == {i: i * i for i in range(20)}
    assert batcher.items == 20 and 1 < batcher.largest <= 8 and batcher.batches < 20


def test_one_call_alone_runs_at_once():
    batcher = Batcher(lambda xs: [x + 1 for x in xs])
    assert [batcher(i) for i in range(3)] == [1, 2, 3]
    assert (batcher.batches, batcher.items, batcher.largest) == (3, 3, 1)


def test_a_failing_batch_fails_its_callers_and_the_next_calls_work():
    fail = threading.Event()
    fail.set()

    def fn(xs):
        if fail.is_set():
            time.sleep(0.05)
            raise RuntimeError("model broke")
        return xs

    batcher = Batcher(fn)
    results = _callers(batcher, [1, 2, 3])
    assert all(isinstance(r, RuntimeError) for r in results.values())
    fail.clear()
    assert batcher(7) == 7


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(lambda xs: xs, max_batch=0)
