"""The only module of tinydl that imports ``mpi4py``, on first use."""

from __future__ import annotations


def mpi():
    """``mpi4py.MPI``; an ImportError saying what to install when it is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "tinydl.distributed needs mpi4py and an MPI library: pip install 'tinydl[mpi]' "
            f"(mpi4py and the mpich wheel) ({exc})"
        ) from exc
    return MPI
