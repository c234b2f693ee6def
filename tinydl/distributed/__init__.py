"""Data-parallel training over processes and machines: MPI (mpi4py) for NumPy arrays, NCCL
(CuPy) for GPU arrays. Not imported by ``import tinydl``; mpi4py is imported on first use.

>>> import tinydl.distributed as dist                           # doctest: +SKIP
>>> dist.init()                                                 # doctest: +SKIP
>>> model = dist.DistributedDataParallel(model)                 # doctest: +SKIP
>>> loader = DataLoader(train, 64, sampler=dist.DistributedSampler(train))  # doctest: +SKIP

Run with ``mpiexec -n 4 python -m mpi4py script.py`` (``-m mpi4py``: an error on one rank ends
the job). Alone (``python script.py``) the same script runs as a world of one process.
"""

from . import group, utils
from .callbacks import GlobalTrainMetrics
from .ddp import DistributedDataParallel
from .group import *  # noqa: F403 - init, get_rank, all_reduce, ...
from .sampler import DistributedSampler
from .sync_batchnorm import SyncBatchNorm
from .utils import *  # noqa: F403 - print0, progress_bar, save_checkpoint, ...

__all__ = [
    *group.__all__,
    "DistributedDataParallel",
    "DistributedSampler",
    "SyncBatchNorm",
    "GlobalTrainMetrics",
    *utils.__all__,
]
