"""tinydl.backend.threads: shares of work on the worker threads, BLAS single-threaded meanwhile."""

import os
import threading
import time

import numpy as np
import pytest
import threadpoolctl

import tinydl as td
import tinydl.functional as F
from tinydl.backend import threads


@pytest.fixture
def two_threads():
    old = threads.get_num_threads()
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(old)


def _blas_threads():
    """Thread counts of NumPy's BLAS (other BLAS libraries, e.g. PyTorch's, are not ours)."""
    return [lib.get_num_threads() for lib in threads._blas()]


def test_numpys_blas_is_under_control():
    numpy_blas = [
        lib["filepath"] for lib in threadpoolctl.threadpool_info()
        if lib["user_api"] == "blas" and "numpy" in lib["filepath"]
    ]
    # (a NumPy wheel's BLAS lives in numpy.libs; a distribution's NumPy links a system one)
    assert threads._blas() and {lib.filepath for lib in threads._blas()} >= set(numpy_blas)


@pytest.mark.parametrize("n, parts", [(7, 2), (8, 2), (1, 2), (3, 5), (10, 3), (0, 2)])
def test_split_covers_the_range_in_near_equal_pieces(n, parts):
    pieces = threads.split(n, parts)
    assert [i for a, b in pieces for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in pieces]
    assert len(pieces) <= parts and (not sizes or max(sizes) - min(sizes) <= 1)


def test_parallel_keeps_order_uses_two_threads_and_single_threaded_blas(two_threads):
    seen, barrier = [], threading.Barrier(2, timeout=10)

    def share(i):
        seen.append((threading.get_ident(), _blas_threads()))
        barrier.wait()  # both shares run at once, or this times out
        return i * i

    before = _blas_threads()
    assert threads.parallel(share, range(2)) == [0, 1]
    assert len({ident for ident, _ in seen}) == 2
    assert all(all(n == 1 for n in blas) for _, blas in seen)
    assert _blas_threads() == before  # restored after the region


def test_an_error_in_a_share_propagates_and_blas_is_restored(two_threads):
    before = _blas_threads()

    def share(i):
        if i == 1:
            raise ValueError("share 1 failed")
        return i

    with pytest.raises(ValueError, match="share 1 failed"):
        threads.parallel(share, range(2))
    assert _blas_threads() == before


def test_an_error_in_the_first_share_waits_for_the_others(two_threads):
    finished = []

    def share(i):
        if i == 0:
            raise ValueError("share 0 failed")
        time.sleep(0.2)  # still running when share 0 has failed
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="share 0 failed"):
        threads.parallel(share, range(2))
    assert finished == [1]  # the region ended only after share 1 had finished


def test_nested_regions_run_serially(two_threads):
    def inner(i):
        return threading.get_ident()

    def outer(i):
        return set(threads.parallel(inner, range(3)))

    for idents in threads.parallel(outer, range(2)):
        assert len(idents) == 1  # the inner shares stayed on the outer share's thread


def test_set_num_threads_is_validated():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="set_num_threads"):
            td.set_num_threads(bad)


def test_conv2d_gives_the_same_result_on_one_and_two_threads():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 9, 8))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    g = rng.standard_normal((5, 4, 5, 4))
    old = td.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            td.set_num_threads(n)
            xt, wt, bt = (td.tensor(a, requires_grad=True) for a in (x, w, b))
            y = F.conv2d(xt, wt, bt, stride=2, padding=1)
            y.backward(td.tensor(g))
            results.append([y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()])
    finally:
        td.set_num_threads(old)
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window", [(2, 2, 0), (3, 2, 1)], ids=["2x2", "3x3 stride 2 pad 1"])
def test_numba_pooling_over_two_threads_matches_the_reference(two_threads, window):
    from tinydl.backend.kernels import numba_cpu, numpy_ref

    kernel, stride, padding = window
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8, 48, 48)).astype(np.float32)  # above the parallel threshold
    x[0, 0, 0, 0] = np.nan
    out, arg = numba_cpu.maxpool2d_forward(x, kernel, stride, padding)
    ref_out, ref_arg = numpy_ref.maxpool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
    g = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(
        numba_cpu.maxpool2d_backward(g, arg, x.shape, kernel, stride, padding),
        numpy_ref.maxpool2d_backward(g, ref_arg, x.shape, kernel, stride, padding),
        rtol=1e-6, atol=1e-6,
    )


def test_numba_batchnorm_over_two_threads_matches_one_thread(two_threads):
    from tinydl.backend.kernels import numba_cpu, numpy_ref

    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 6, 32, 32))  # float64, above the parallel threshold
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    two = numba_cpu.batchnorm_forward(x, w, b, 1e-5)
    g = rng.standard_normal(x.shape)
    inv_std = 1 / np.sqrt(two[3] + 1e-5)
    two_bwd = numba_cpu.batchnorm_backward(g, two[1], w, inv_std)
    td.set_num_threads(1)
    one = numba_cpu.batchnorm_forward(x, w, b, 1e-5)
    one_bwd = numba_cpu.batchnorm_backward(g, one[1], w, inv_std)
    for a, e in zip([*two, *two_bwd], [*one, *one_bwd]):  # the same loops per channel: equal
        np.testing.assert_array_equal(a, e)
    for a, e in zip(two, numpy_ref.batchnorm_forward(x, w, b, 1e-5)):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)


@pytest.fixture
def after_a_region(two_threads, monkeypatch):
    monkeypatch.setitem(threads._state, "regions", True)


@pytest.mark.parametrize("shape", [(256, 400, 200), (5, 3, 4), (64, 4000, 80)])
def test_matmul_split_by_rows_matches_numpy(after_a_region, shape):
    m, k, n = shape
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(threads.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    a32, bt = a.astype(np.float32), rng.standard_normal((n, k)).astype(np.float32).T  # a view
    got = threads.matmul(a32, bt)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a32 @ bt, rtol=1e-5, atol=1e-4)


def _spy(monkeypatch, name, calls):
    fn = getattr(threads, name)
    monkeypatch.setattr(threads, name, lambda *a: calls.append(name) or fn(*a))


@pytest.mark.parametrize("regions", [False, True])
@pytest.mark.parametrize("shape, split", [((128, 784, 256), True), ((128, 400, 120), False)])
def test_matmul_uses_blas_threads_until_a_region_has_run(two_threads, monkeypatch, regions,
                                                         shape, split):  # fmt: skip
    monkeypatch.setitem(threads._state, "regions", regions)
    calls = []
    for name in ("parallel", "_enter_blas_single"):
        _spy(monkeypatch, name, calls)
    m, k, n = shape
    a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
    np.testing.assert_array_equal(threads.matmul(a, b), np.full((m, n), k, np.float32))
    if not regions:  # one call on BLAS's own pool, whatever the size
        assert calls == []
    else:  # off BLAS's pool: split, or one single-threaded call
        assert calls == (["parallel", "_enter_blas_single"] if split else ["_enter_blas_single"])


def test_a_region_marks_the_process(two_threads, monkeypatch):
    monkeypatch.setitem(threads._state, "regions", False)
    threads.parallel(lambda i: i, [0])  # one item: no region
    assert not threads._state["regions"]
    threads.parallel(lambda i: i, [0, 1])
    assert threads._state["regions"]


def test_relu_over_two_threads_matches_one_thread(two_threads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 8, 24, 24)).astype(np.float32)  # above map_rows' threshold
    x[3, 2, 1, 1], x[5, 0, 0, 0] = np.nan, 0.0
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for n in (2, 1):
        td.set_num_threads(n)
        xt = td.tensor(x, requires_grad=True)
        y = F.relu(xt)
        y.backward(td.tensor(g))
        results.append((y.detach().numpy(), xt.grad.numpy()))
    for a, e in zip(*results):
        np.testing.assert_array_equal(a, e)
    y, dx = results[0]
    assert np.isnan(y[3, 2, 1, 1]) and dx[3, 2, 1, 1] == g[3, 2, 1, 1]  # NaN passes, as PyTorch
    assert dx[5, 0, 0, 0] == 0 and np.array_equal(dx[x > 0], g[x > 0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_gets_a_pool_of_its_own(two_threads):
    threads.parallel(lambda i: i, range(2))  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: would hang on the parent's thread-less pool
        code = 0 if threads.parallel(lambda i: i * 2, range(2)) == [0, 2] else 1
        os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in parallel()")
