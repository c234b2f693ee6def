"""DistributedDataParallel on 2 and 3 MPI ranks: the gradients equal those of one process."""

from __future__ import annotations

import numpy as np
import pytest

from tests.distributed.mpi import WORKERS, check, mpirun
from tests.distributed.workers.grads import reference_grads

CASES = [
    ("lenet", "plain"),  # no batch norm: the whole batch's gradient
    ("cnn", "sync"),  # SyncBatchNorm: the whole batch's gradient
    ("cnn", "plain"),  # per-rank batch norm: the mean of the shares' gradients
]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("model,bn", CASES)
def test_gradients_equal_one_process(tmp_path, world, model, bn):
    check(mpirun(world, [str(WORKERS / "grads.py"), model, bn, str(tmp_path)]))
    want = reference_grads(model, bn, world)
    for rank in range(world):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert sorted(got.files) == sorted(want)
        for name in want:
            np.testing.assert_allclose(
                got[name], want[name], rtol=1e-12, atol=1e-14, err_msg=f"rank {rank}, {name}"
            )


def test_one_array_per_call_gives_the_same_gradients(tmp_path):
    # bucket_cap_mb=0: every parameter in a bucket of its own, one all-reduce each
    check(mpirun(2, [str(WORKERS / "grads.py"), "cnn", "sync", str(tmp_path), "0"]))
    want = reference_grads("cnn", "sync", 2)
    got = np.load(tmp_path / "rank1.npz")
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_unused_parameters_and_no_sync():
    out = check(mpirun(2, [str(WORKERS / "accumulate.py")])).stdout
    assert out.count(": ok") == 2
