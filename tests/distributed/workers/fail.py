"""Rank 1 raises while the others wait in an all-reduce: the job must end, non-zero, in
seconds. ``fail.py guarded``: the main wrapped in ``abort_on_error`` (the CLI's way)."""

from __future__ import annotations

import sys

import numpy as np

import tinydl.distributed as dist


def main() -> None:
    dist.init()
    if dist.get_rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    dist.all_reduce(np.ones(3))  # rank 1 never joins this


if __name__ == "__main__":
    (dist.abort_on_error(main) if sys.argv[1:] == ["guarded"] else main)()
