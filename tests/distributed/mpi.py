"""Running a script on N MPI ranks from a test: the ``mpiexec`` beside ``sys.executable`` (the
one of the ``mpich`` wheel that the ``mpi`` extra installs), always with a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MPIEXEC = Path(sys.executable).with_name("mpiexec")
ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"


def need_mpi() -> None:
    """Skip unless mpi4py imports and its mpiexec is installed beside this Python."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'tinydl[mpi]')")
    if not MPIEXEC.exists():
        pytest.skip(
            f"no mpiexec beside {sys.executable} (pip install 'tinydl[mpi]': the mpich wheel)"
        )


def mpi_command(n: int, args: list[str], guard: bool = True) -> list[str]:
    """``mpiexec -n n python [-m mpi4py] ARGS`` (``-m mpi4py``: an error on a rank aborts all)."""
    need_mpi()
    return [str(MPIEXEC), "-n", str(n), sys.executable, *(["-m", "mpi4py"] if guard else []), *args]


def mpi_env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def mpirun(
    n: int, args: list[str], timeout: float = 180, cwd=None, guard: bool = True
) -> subprocess.CompletedProcess:
    """Run ``mpi_command`` to its end; a job that outlives ``timeout`` fails the test (and is
    killed) instead of hanging the suite."""
    env, cmd = mpi_env(), mpi_command(n, args, guard)
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or ROOT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s (a hang?): {exc.stderr}")


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result
