"""The NCCL path of tinydl.distributed on a GPU. NCCL refuses two ranks on one device, so on a
one-GPU machine the communicator is made with one rank (and a stand-in for MPI): that
still runs the id broadcast, the communicator, the dtype and op codes and DDP's buckets on
CuPy arrays, without mpi4py. The CPU-only parts (codes, errors) are tested on every machine."""

from __future__ import annotations

import types

import numpy as np
import pytest

import tinydl as td
from tinydl.distributed import group
from tinydl.distributed.nccl import nccl_dtype


def test_nccl_dtype_codes_and_the_error():
    fake = types.SimpleNamespace(NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_INT64=5)
    assert nccl_dtype(fake, np.float32) == 7 and nccl_dtype(fake, "float64") == 8
    with pytest.raises(TypeError, match="NCCL collectives take float16, .* arrays, got complex64"):
        nccl_dtype(fake, np.complex64)


class _OneRankComm:
    """MPI's part for one rank: the id broadcast has no one to reach (so the GPU machine, which
    has no mpi4py, still runs the NCCL path)."""

    def Bcast(self, array, root=0):
        assert root == 0


@pytest.fixture
def one_rank_nccl_world(cuda, monkeypatch):
    world = types.SimpleNamespace(rank=0, size=1, comm=_OneRankComm(), nccl={})
    monkeypatch.setitem(group._state, "world", world)
    return world


def test_all_reduce_and_broadcast_through_nccl(cuda, one_rank_nccl_world):
    from tinydl.distributed import nccl

    x = cuda.xp.arange(6, dtype=cuda.xp.float32)
    nccl.all_reduce(one_rank_nccl_world, x, "sum")
    nccl.broadcast(one_rank_nccl_world, x, 0)
    cuda.xp.cuda.get_current_stream().synchronize()
    np.testing.assert_array_equal(cuda.xp.asnumpy(x), np.arange(6))
    assert x.device.id in one_rank_nccl_world.nccl  # one communicator per device, kept


def test_ddp_buckets_on_the_gpu(cuda, one_rank_nccl_world):
    from tinydl.distributed import nccl
    from tinydl.distributed.ddp import _Bucket

    a = td.Parameter(td.ones(2, 3).to("cuda"))
    a.grad = td.full((2, 3), 3.0).to("cuda")
    bucket = _Bucket([a])
    nccl.communicator(one_rank_nccl_world, bucket.flat)  # made with the world's 1 rank
    one_rank_nccl_world.size = 2  # so that group.all_reduce does not skip the 1-rank world
    bucket.reduce(1)
    assert cuda.xp.shares_memory(a.grad.data, bucket.flat)
    np.testing.assert_array_equal(cuda.xp.asnumpy(a.grad.data), 3.0)
