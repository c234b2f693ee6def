"""What only rank 0 should do (print, draw a progress bar, write a file), and the per-rank setup
of a job: BLAS threads and a prompt end of the whole job when one rank fails."""

from __future__ import annotations

import functools
import sys
import time
import traceback

from ..backend.threads import _cpus, env_threads, set_blas_threads, set_num_threads
from ..io import save_checkpoint as _save_checkpoint
from ..progress import progress_bar as _progress_bar
from . import group

_GRACE_SECONDS = 3.0

__all__ = [
    "main_process_only",
    "print0",
    "progress_bar",
    "save_checkpoint",
    "set_threads_per_rank",
    "abort_on_error",
]


def main_process_only(fn):
    """Decorate ``fn`` to run on rank 0 only (None elsewhere)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if group.is_main_process() else None

    return wrapper


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only."""
    if group.is_main_process():
        print(*args, **kwargs)


def progress_bar(iterable, **kwargs):
    """``tinydl.progress.progress_bar``, drawn by rank 0 only."""
    enabled = kwargs.pop("enabled", None)
    return _progress_bar(iterable, enabled=enabled if group.is_main_process() else False, **kwargs)


def save_checkpoint(path, *args, **kwargs) -> None:
    """``tinydl.io.save_checkpoint`` written by rank 0 (atomically), then a barrier, so that
    every rank can read the file when this returns."""
    if group.is_main_process():
        _save_checkpoint(path, *args, **kwargs)
    group.barrier()


def set_threads_per_rank() -> int:
    """Give each rank on this machine an equal share of the CPUs for tinydl's threads and BLAS
    (BLAS's default, every core in every rank, made steps 6-12x slower); returns the share.
    ``TINYDL_NUM_THREADS`` overrides it."""
    share = env_threads() or max(1, _cpus() // group.get_local_world_size())
    set_num_threads(share)
    set_blas_threads(share)
    return share


def abort_on_error(fn):
    """Decorate a rank's main function: an exception (or Ctrl-C) on one rank prints
    ``rank R: ...`` and aborts every rank of the job, instead of leaving the others waiting in
    a collective forever. (``python -m mpi4py script.py`` does the same for a whole script.)"""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SystemExit:
            raise
        except BaseException as exc:
            w = group.world()
            if w.size == 1:
                raise
            if isinstance(exc, KeyboardInterrupt):
                print(f"rank {w.rank}: interrupted; stopping all {w.size} ranks", file=sys.stderr)
                if w.rank != 0:
                    # NOTE: Ctrl-C reaches every rank; the others give rank 0 a moment to
                    # write interrupted.safetensors (it aborts the job when done), unless it
                    # is stuck in a collective that this rank has left
                    time.sleep(_GRACE_SECONDS)
            else:
                print(f"rank {w.rank} failed; stopping all {w.size} ranks:", file=sys.stderr)
                traceback.print_exc()
            group.abort(130 if isinstance(exc, KeyboardInterrupt) else 1)

    return wrapper
