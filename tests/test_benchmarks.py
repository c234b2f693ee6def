"""The benchmarks run end to end (one timed call each) and print their tables; `tinydl info` and
`tinydl bench` work. Speed itself is never asserted here: see benchmarks/RESULTS.md."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinydl as td
from benchmarks import kernels as kernel_bench
from benchmarks.__main__ import main as bench_main

ROOT = Path(__file__).resolve().parents[1]


def test_kernels_benchmark_prints_every_case(capsys):
    assert kernel_bench.main(["--steps", "1", "--warmup", "0", "--threads", "1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "GEMM ceiling" in out
    for label in ("(a)", "(b)", "(c)", "(d)", "max_pool2d 2x2", "linear"):
        assert f"| {label}" in out or f"{label} " in out, label
    # each row printed as measured, then in the table
    assert (
        out.count("| fwd+bwd ") == 2 * 6 and "tinydl numpy ms" in out and "tinydl numba ms" in out
    )


def test_epoch_benchmark_runs_one_model_per_kernel_variant(capsys):
    assert (
        bench_main(
            [
                "epoch",
                "--models",
                "mlp",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--kernels",
                "numba,numpy",
                "--rounds",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| mlp (numba)" in out and "| mlp (numpy)" in out
    assert "tinydl fwd / bwd / opt ms" in out
    # two alternated rounds per framework, each round's median printed
    assert out.count("(rounds: [") == 2 and all(
        len(line.split("(rounds: [")[1].split("]")[0].split(",")) == 2
        for line in out.splitlines()
        if "(rounds: [" in line
    )


def test_benchmark_arguments_are_checked(capsys):
    with pytest.raises(SystemExit):
        kernel_bench.main(["--kernels", "fpga"])
    assert "--kernels" in capsys.readouterr().err


def test_info_names_the_kernels_and_the_blas():
    d = td.info()
    assert d["kernels"].startswith(td.backend.active_kernels())
    assert d["blas"] and d["numpy"]
    run = subprocess.run(
        [sys.executable, "-m", "tinydl", "info"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TINYDL_KERNELS": "numpy", "TINYDL_NUM_THREADS": "3",
             "TINYDL_RETAIN_MEMORY": "0"},
    )
    assert run.returncode == 0, run.stderr
    assert "kernels:" in run.stdout and "numpy (TINYDL_KERNELS" in run.stdout
    assert "blas:" in run.stdout
    assert "threads:       3 worker threads" in run.stdout
    assert "memory:        freed memory returned to the system" in run.stdout


def test_tinydl_bench_from_a_clone_and_from_elsewhere(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tinydl", "bench", "kernels", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "--kernels" in run.stdout
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", "tinydl", "bench", "kernels"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 1 and "root of a tinydl clone" in run.stderr
    assert "Traceback" not in run.stderr


def test_overhead_benchmark_prints_every_case(capsys):
    assert bench_main(["overhead", "--steps", "2", "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "a * b (no_grad)" in out and "tiny MLP step" in out and "tinydl us/op" in out


def test_overhead_profile_mode_reports_off_and_on_costs(capsys):
    argv = ["overhead", "--profile", "--steps", "2", "--warmup", "0", "--threads", "1"]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    assert "extra us/recorded" in out and "off: the check per op costs" in out
    # a * b records one op; (a * b).sum().backward() two ops, their two nodes and more
    row = next(line for line in out.splitlines() if line.startswith("| a * b (no_grad)"))
    assert row.split("|")[4].strip() == "1"


def test_data_pipeline_times_every_transform_pipeline():
    """The per-transform rows of `python -m benchmarks data_pipeline`, on 8 small images."""
    from benchmarks import data_pipeline

    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    rows = data_pipeline.time_transforms(images, 1, 0)
    names = [f"tinydl {name} (.batch alone)" for name in data_pipeline.transform_pipelines()]
    assert sorted(rows) == sorted(names)
    assert all(r["n"] == 1 and r["ms"] > 0 for r in rows.values())


def test_distributed_benchmark_times_every_configuration(capsys):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'tinydl[mpi]')")
    if not Path(sys.executable).with_name("mpiexec").exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (the mpich wheel of the mpi extra)")
    assert bench_main(["distributed", "--steps", "1", "--warmup", "0", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("1 rank x 2 threads", "1 rank x 1 thread", "bucketed", "per array"):
        assert f"| {label}" in out or f"x 1 thread, {label}" in out, label
    assert "(1 calls)" in out and "10 Gb/s: N=2" in out


def test_sequence_benchmark_prints_a_row_per_case(capsys):
    assert bench_main(["sequence", "--cases", "transformer", "--steps", "1", "--warmup", "0", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| TransformerEncoderLayer(256, 8, 1024, dropout 0.1) | 789,760" in out


def test_step_gflop_counts_forward_and_both_gradients():
    from benchmarks.epoch import step_gflop

    # MLP 784-256-128-10 (tinydl.layers.MLP): the weight gradients cost what the forward does,
    # the input gradients the same less the first layer's (the image needs none)
    fwd = 784 * 256 + 256 * 128 + 128 * 10
    assert step_gflop("mlp", 4) == pytest.approx(2 * (3 * fwd - 784 * 256) * 4 / 1e9)


def test_conv_layers_finds_each_models_convolutions_and_their_paths():
    from benchmarks.conv_layers import label, model_layers, tinydl_path

    pytest.importorskip("numba", reason="the path column names the Numba kernels' convolutions")
    layers = model_layers("cnn", 128)
    assert [(label(x), x["count"], tinydl_path(x)) for x in layers] == [
        ("1->32 at 28x28, k3 s1 p1", 1, "per-image"),
        ("32->32 at 28x28, k3 s1 p1", 1, "winograd F(4x4)"),
        ("32->64 at 14x14, k3 s1 p1", 1, "winograd F(2x2)"),
        ("64->64 at 14x14, k3 s1 p1", 1, "winograd F(2x2)"),
    ]
    assert layers[0]["first"] and not layers[1]["first"]
    resnet = model_layers("resnet", 8)
    assert sum(x["count"] for x in resnet) == 9 and len(resnet) == 8  # block 1's two convs match


def test_conv_layers_benchmark_prints_a_row_per_layer(capsys):
    argv = ["conv_layers", "--model", "lenet", "--steps", "1", "--warmup", "0", "--rounds", "1"]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    assert "| 6->16 at 14x14, k5 s1 p0 | 1" in out and "| all (x count)" in out
