"""The process group over MPI, and alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import tinydl.distributed as dist
from tests.distributed.mpi import WORKERS, check, mpirun


@pytest.mark.parametrize("world", [2, 3])
def test_collectives_on_ranks(world, tmp_path):
    out = check(mpirun(world, [str(WORKERS / "collectives.py"), str(tmp_path)])).stdout
    assert out.count("printed by rank 0 only") == 1
    # NOTE: the ranks' lines may interleave in the one pipe
    assert sorted(re.findall(r"rank \d+: ok", out)) == [f"rank {r}: ok" for r in range(world)]


@pytest.mark.parametrize("guard", ["-m mpi4py", "abort_on_error"])
def test_a_failing_rank_ends_the_job_in_seconds(guard):
    start = time.perf_counter()
    if guard == "-m mpi4py":
        result = mpirun(3, [str(WORKERS / "fail.py")], timeout=60)
    else:
        result = mpirun(3, [str(WORKERS / "fail.py"), "guarded"], timeout=60, guard=False)
    seconds = time.perf_counter() - start
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stderr
    assert seconds < 30, f"the job took {seconds:.0f} s to end"


def test_alone_it_is_a_world_of_one_without_mpi4py():
    code = (
        "import sys, numpy as np, tinydl.distributed as d; x = np.ones(3); d.all_reduce(x); "
        "d.broadcast(x); d.barrier(); "
        "print(d.get_rank(), d.get_world_size(), d.get_local_rank(), x.sum(), "
        "'mpi4py' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["0", "1", "0", "3.0", "False"]


def test_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="all_reduce: op must be one of sum, mean, max, min"):
        dist.all_reduce(np.ones(2), "prod")
    with pytest.raises(ValueError, match="all_reduce: op='mean' needs a floating array, got int64"):
        dist.all_reduce(np.ones(2, np.int64), "mean")
    with pytest.raises(
        ValueError, match=r"all_reduce: the array must be C-contiguous .*shape \(2, 2\)"
    ):
        dist.all_reduce(np.ones((2, 4))[:, ::2])
    with pytest.raises(TypeError, match="broadcast: expected a Tensor or an array, got list"):
        dist.broadcast([1.0])
    with pytest.raises(ValueError, match=r"broadcast: src must be a rank in 0..0, got 1"):
        dist.broadcast(np.ones(2), src=1)
    monkeypatch.setitem(dist.group._state, "world", None)  # not joined yet
    with pytest.raises(ValueError, match="init: backend must be None or 'mpi', got 'gloo'"):
        dist.init("gloo")
