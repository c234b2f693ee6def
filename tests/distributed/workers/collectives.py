"""Checks of the collectives on every rank; a failed check exits non-zero (and, run with
``-m mpi4py``, aborts the job). ``python -m mpi4py collectives.py``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

import tinydl as td
import tinydl.distributed as dist


def main() -> None:
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and world > 1, world
    assert 0 <= dist.get_local_rank() < dist.get_local_world_size() == world
    assert dist.is_main_process() == (rank == 0)

    for dtype in (np.float32, np.float64, np.int64):
        x = np.arange(6, dtype=dtype).reshape(2, 3) * (rank + 1)
        assert dist.all_reduce(x) is x
        np.testing.assert_array_equal(x, np.arange(6).reshape(2, 3) * sum(range(1, world + 1)))
    for op, want in [("max", world - 1), ("min", 0), ("mean", (world - 1) / 2)]:
        x = np.full(4, float(rank))
        dist.all_reduce(x, op)
        np.testing.assert_allclose(x, want)
    t = td.tensor(np.full(3, rank + 1.0))  # a Tensor is reduced in its array
    dist.all_reduce(t, "mean")
    np.testing.assert_allclose(t.numpy(), (world + 1) / 2)

    for src in range(world):
        x = np.full(5, float(rank))
        dist.broadcast(x, src=src)
        np.testing.assert_array_equal(x, src)
    dist.barrier()

    # rank 0 writes, the barrier inside lets every rank read the file at once
    path = Path(sys.argv[1]) / "ckpt.safetensors"
    dist.save_checkpoint(path, {"w": td.tensor(np.arange(3.0) + rank)})
    state = td.io.load_checkpoint(path)["model_state"]
    np.testing.assert_array_equal(state["w"], np.arange(3.0))
    assert dist.main_process_only(lambda: "ran")() == ("ran" if rank == 0 else None)
    assert dist.set_threads_per_rank() == max(1, len(os.sched_getaffinity(0)) // world)
    dist.print0("printed by rank 0 only")
    print(f"rank {rank}: ok")


if __name__ == "__main__":
    main()
