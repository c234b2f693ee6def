"""Data-parallel training over processes and machines: MPI (mpi4py) for NumPy arrays, NCCL
(CuPy) for GPU arrays. Not imported by ``import tinydl``; mpi4py is imported on first use.

>>> import tinydl.distributed as dist                           # doctest: +SKIP
>>> dist.init()                                                 # doctest: +SKIP
>>> model = dist.DistributedDataParallel(model)                 # doctest: +SKIP
>>> loader = DataLoader(train, 64, sampler=dist.DistributedSampler(train))  # doctest: +SKIP

Run with ``mpiexec -n 4 python -m mpi4py script.py`` (``-m mpi4py``: an error on one rank ends
the job). Alone (``python script.py``) the same script runs as a world of one process.
"""

from .callbacks import GlobalTrainMetrics
from .ddp import DistributedDataParallel
from .group import (
    abort,
    all_reduce,
    barrier,
    broadcast,
    get_local_rank,
    get_local_world_size,
    get_rank,
    get_world_size,
    init,
    is_initialized,
    is_main_process,
)
from .sampler import DistributedSampler
from .sync_batchnorm import SyncBatchNorm
from .utils import (
    abort_on_error,
    main_process_only,
    print0,
    progress_bar,
    save_checkpoint,
    set_threads_per_rank,
)

__all__ = [
    "init",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "get_local_world_size",
    "is_main_process",
    "all_reduce",
    "broadcast",
    "barrier",
    "abort",
    "DistributedDataParallel",
    "DistributedSampler",
    "SyncBatchNorm",
    "GlobalTrainMetrics",
    "main_process_only",
    "print0",
    "progress_bar",
    "save_checkpoint",
    "set_threads_per_rank",
    "abort_on_error",
]
