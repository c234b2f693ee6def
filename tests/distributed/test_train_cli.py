"""``mpiexec -n 2 python -m mpi4py -m tinydl train --distributed``: one process's weights, one
log, one run folder; Ctrl-C stops every rank and ``--resume`` finishes the run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.distributed.mpi import ROOT, mpi_command, mpi_env, mpirun
from tinydl.data import MNIST, DatasetNotFoundError
from tinydl.io import load_checkpoint

# LeNet5: no dropout and no batch norm, so N ranks with batch b each take the steps of one
# process with batch N * b; only the float32 summation order differs.
ARGS = ["train", "--model", "lenet", "--epochs", "2", "--batch-size", "64", "--seed", "3"]
# measured: at most 2e-6 apart after 2 epochs (30 Adam steps) on 1000 images
ATOL = 2e-5


@pytest.fixture(autouse=True)
def _mnist():
    try:
        MNIST(train=False)
    except DatasetNotFoundError as exc:  # TINYDL_DATA (CI: ../shared/data) holds MNIST
        pytest.skip(f"MNIST not found: {exc}")


def _weights(folder):
    return load_checkpoint(folder / "last.safetensors")["model_state"]


def _one_process(out, limit: str):
    cmd = [sys.executable, "-m", "tinydl", *ARGS, "--limit", limit, "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, env=mpi_env(), cwd=ROOT)
    return _weights(out)


def _assert_same_weights(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=ATOL, err_msg=name)


def test_two_ranks_train_like_one_process(tmp_path):
    run = tmp_path / "two"
    result = mpirun(
        2, ["-m", "tinydl", *ARGS, "--limit", "1000", "--distributed", "--out", str(run)]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch 1:") == 1 and result.stdout.count("test accuracy") == 1
    assert "2 ranks, 32 images per rank of each 64-image batch" in result.stdout
    assert {p.name for p in run.iterdir()} >= {
        "best.safetensors",
        "last.safetensors",
        "metrics.json",
    }
    _assert_same_weights(_weights(run), _one_process(tmp_path / "one", "1000"))


def test_ctrl_c_stops_every_rank_and_resume_finishes(tmp_path):
    run = tmp_path / "two"
    cmd = mpi_command(
        2, ["-m", "tinydl", *ARGS, "--limit", "4000", "--distributed", "--out", str(run)]
    )
    env = {**mpi_env(), "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    seen = []
    try:
        for line in job.stdout:
            seen.append(line)
            if line.startswith("epoch 1:"):
                break
        job.send_signal(signal.SIGINT)  # as Ctrl-C in the terminal of mpiexec
        start = time.perf_counter()
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    said = f"exit {job.returncode}\n{''.join(seen)}{out}\nstderr:\n{err}"
    assert seen and seen[-1].startswith("epoch 1:"), said
    assert job.returncode != 0, said
    assert time.perf_counter() - start < 30
    # every rank gets the Ctrl-C; rank 0 saves, the others wait for it (or abort after 3 s)
    assert ": interrupted; stopping all 2 ranks" in err, said
    assert "interrupted: saved" in out and (run / "interrupted.safetensors").exists(), said
    assert load_checkpoint(run / "last.safetensors")["epoch"] == 1

    resumed = mpirun(
        2,
        ["-m", "tinydl", *ARGS, "--limit", "4000", "--distributed", "--out", str(run), "--resume"],
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and resumed.stdout.count("epoch 2:") == 1
    _assert_same_weights(_weights(run), _one_process(tmp_path / "one", "4000"))


def test_a_global_batch_that_does_not_split_evenly_is_refused(tmp_path):
    args = ["-m", "tinydl", *ARGS[:-4], "--batch-size", "63", "--distributed", "--limit", "200"]
    result = mpirun(2, [*args, "--out", str(tmp_path / "run")], timeout=60)
    assert result.returncode != 0
    assert "--batch-size 63 (the global batch) must be a multiple of the 2 ranks" in result.stderr
