"""A bounded load test on loopback: ``tinydl serve`` answers every one of 100 requests from
16 concurrent clients. Latency is measured (``python -m benchmarks serve``), never asserted."""

import json

import pytest

from benchmarks.__main__ import main as bench_main


def test_concurrent_requests_all_succeed(tiny_run, tmp_path, capsys):
    pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
    out = tmp_path / "load.json"
    args = [
        "serve",
        "--run",
        str(tiny_run),
        "--requests",
        "100",
        "--concurrency",
        "16",
        "--warmup",
        "0",
        "--json",
        str(out),
    ]
    assert bench_main(args) == 0, capsys.readouterr().out
    result = json.loads(out.read_text())
    assert (result["requests"], result["concurrency"], result["failures"]) == (100, 16, 0)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert 1 <= result["mean_batch"] <= 16  # at most one request per client in a batch
    assert "| 100      | 16         | 0      |" in capsys.readouterr().out
