"""DDP and SyncBatchNorm in a world of one process (the same script runs alone)."""

from __future__ import annotations

import numpy as np
import pytest

import tinydl as td
import tinydl.distributed as dist
import tinydl.functional as F
from tinydl.autograd import queue_callback
from tinydl.errors import BackwardError
from tinydl.layers import BatchNorm2d, Linear, MnistCNN, Sequential


def test_ddp_alone_trains_like_the_plain_model():
    td.manual_seed(0)
    plain = Sequential(Linear(4, 3), Linear(3, 2))
    td.manual_seed(0)
    ddp = dist.DistributedDataParallel(Sequential(Linear(4, 3), Linear(3, 2)))
    x = td.randn(5, 4)
    plain(x).sum().backward()
    ddp(x).sum().backward()
    for p, q in zip(plain.parameters(), ddp.module.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    assert "world_size=1" in repr(ddp)


def test_buckets_by_size_and_dtype():
    from tinydl.distributed.ddp import _buckets

    params = [td.Parameter(td.zeros(n)) for n in (10, 10, 300, 5)]
    params.insert(2, td.Parameter(td.zeros(7, dtype=td.float64)))
    sizes = [[p.numel() for p in b.params] for b in _buckets(params, cap_bytes=100)]
    assert sizes == [[10, 10], [7], [300], [5]]
    assert [[p.numel() for p in b.params] for b in _buckets(params, 0)] == [
        [10],
        [10],
        [7],
        [300],
        [5],
    ]


def test_bucket_reduce_points_grads_into_the_bucket():
    from tinydl.distributed.ddp import _Bucket

    a, b = td.Parameter(td.ones(2, 3)), td.Parameter(td.ones(4))
    a.grad = td.full((2, 3), 2.0)
    bucket = _Bucket([a, b])
    bucket.reduce(1)
    np.testing.assert_array_equal(a.grad.numpy(), 2.0)
    assert np.shares_memory(a.grad.data, bucket.flat) and b.grad is None


def test_ddp_errors():
    with pytest.raises(
        TypeError, match="DistributedDataParallel: module must be a Module, got list"
    ):
        dist.DistributedDataParallel([])
    with pytest.raises(ValueError, match="bucket_cap_mb must be >= 0, got -1"):
        dist.DistributedDataParallel(Linear(2, 2), bucket_cap_mb=-1)


def test_queue_callback_runs_once_after_the_grads_are_written():
    w = td.Parameter(td.ones(3))
    seen = []

    def at_end():
        seen.append(None if w.grad is None else w.grad.numpy().copy())

    w.register_hook(lambda g: queue_callback(at_end))
    (w * w).sum().backward()  # the hook fires once per leaf; the callback once per pass
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], 2.0)
    td.grad((w * 3).sum(), w)  # td.grad writes no .grad: the callback does not run
    assert len(seen) == 1
    with pytest.raises(BackwardError, match="queue_callback: call it from a hook while backward"):
        queue_callback(at_end)


def test_sync_batchnorm_alone_is_batchnorm():
    td.manual_seed(0)
    bn = BatchNorm2d(3).to(td.float64)
    sync = dist.SyncBatchNorm(3).to(td.float64)
    x = td.randn(4, 3, 5, 5, dtype=td.float64, requires_grad=True)
    grads = []
    for layer in (bn, sync):
        y = layer(x)
        grads.append(td.grad((y * y).sum(), x)[0].numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(sync.running_var.numpy(), bn.running_var.numpy())


def test_sync_batchnorm_function_matches_batch_norm():
    # the Function itself, with a world of one: forward and gradients equal batch_norm's
    from tinydl.distributed.sync_batchnorm import SyncBatchNormFunction

    rng = np.random.default_rng(0)
    x = td.tensor(rng.standard_normal((6, 3, 4)), requires_grad=True)
    w = td.tensor(rng.standard_normal(3), requires_grad=True)
    b = td.tensor(rng.standard_normal(3), requires_grad=True)
    g = rng.standard_normal((6, 3, 4))
    rm, rv = np.zeros(3), np.ones(3)
    y = SyncBatchNormFunction.apply(x, w, b, 1e-5, (rm, rv, 0.1))
    got = td.grad(y, [x, w, b], td.tensor(g))
    rm2, rv2 = np.zeros(3), np.ones(3)
    y2 = F.batch_norm(x, rm2, rv2, w, b, training=True)
    want = td.grad(y2, [x, w, b], td.tensor(g))
    np.testing.assert_allclose(y.detach().numpy(), y2.detach().numpy(), rtol=1e-12, atol=1e-12)
    for a, c in zip(got, want):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, rm2, rtol=1e-12)
    np.testing.assert_allclose(rv, rv2, rtol=1e-12)
    with pytest.raises(BackwardError, match="SyncBatchNorm: double backward"):
        y3 = SyncBatchNormFunction.apply(x, w, b, 1e-5)
        td.grad(y3, x, td.tensor(g), create_graph=True)


def test_convert_sync_batchnorm_keeps_the_weights():
    td.manual_seed(0)
    model = MnistCNN(width=4, hidden=8)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    converted = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    kinds = {type(m).__name__ for m in converted.modules()}
    assert "SyncBatchNorm" in kinds and not kinds & {"BatchNorm1d", "BatchNorm2d"}
    assert sorted(converted.state_dict()) == sorted(state)
    for k, v in converted.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k])
    x = td.randn(2, 1, 28, 28)
    converted.eval()
    assert converted(x).shape == (2, 10)
