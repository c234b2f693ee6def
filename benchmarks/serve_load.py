"""Load test of ``tinydl serve`` on loopback: N requests from C concurrent clients, each one
28x28 PNG digit posted to ``/predict``; failures and latency percentiles.

The server is started as a user starts it (``tinydl serve RUN`` in its own process, BLAS
limited to ``--threads``); the clients are threads with one keep-alive connection each. Without
``--run`` the pretrained LeNet5 shipped with tinydl is served (``--pretrained lenet``).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from . import common

DESCRIPTION = "tinydl serve under load: N requests, C concurrent clients, p50/p99 latency"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tinydl serve RUN`` in a subprocess on a free loopback port, up once ``/health``
    answers; ``stop()`` ends it and returns its output."""

    def __init__(self, run, timeout: float = 60.0, env: dict | None = None):
        """``run``: a run folder or checkpoint, or the command-line arguments that choose the
        model (e.g. ``["--pretrained", "lenet"]``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        which = [str(run)] if isinstance(run, (str, os.PathLike)) else list(run)
        cmd = [sys.executable, "-m", "tinydl", "serve", *which, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env if env is not None else dict(os.environ),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinydl serve exited: {self.proc.stdout.read()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"tinydl serve did not answer /health in {timeout} s"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def _http_stack() -> str:
    import importlib.util

    have = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m) is not None]
    return " and ".join(have) if have else "h11 and asyncio (no httptools/uvloop)"


def digit_png() -> bytes:
    """A 28x28 grayscale PNG of a "7" drawn white on black."""
    from PIL import Image

    image = np.zeros((28, 28), np.uint8)
    image[6:9, 7:21] = 255
    for row in range(9, 23):
        col = 19 - (row - 9) // 2
        image[row, col - 1 : col + 2] = 255
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def load(port: int, body: bytes, requests: int, concurrency: int) -> dict:
    """Post ``body`` ``requests`` times from ``concurrency`` threads; latencies and failures."""
    latencies, failures, lock = [], [], threading.Lock()
    remaining = iter(range(requests))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "image/png"}
        while True:
            with lock:
                if next(remaining, None) is None:
                    break
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                took = time.perf_counter() - start
                ok = response.status == 200 and len(json.loads(data)["top3"]) == 3
                reason = None if ok else f"HTTP {response.status}: {data[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                took, reason = time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                latencies.append(took)
                if reason is not None:
                    failures.append(reason)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "failures": len(failures),
        "failure_examples": failures[:5],
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "requests_per_s": len(latencies) / wall,
        "wall_s": wall,
    }


def _served(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        return json.loads(r.read())["served"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks serve", description=DESCRIPTION)
    parser.add_argument(
        "--run", default=None, help="run folder to serve (default: the pretrained LeNet5)"
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads of the server")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the result here")
    parser.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.threads) < 1 or args.warmup < 0:
        parser.error("--requests, --concurrency and --threads must be >= 1, --warmup >= 0")
    info = common.machine_info(args.threads)
    print("\n".join(common.header_lines(info)), flush=True)
    server = Server(args.run or ["--pretrained", "lenet"], env=common.thread_env(args.threads))
    try:
        body = digit_png()
        if args.warmup:
            load(server.port, body, args.warmup, min(args.concurrency, args.warmup))
        before = _served(server.url)
        result = load(server.port, body, args.requests, args.concurrency)
        after = _served(server.url)
    finally:
        server.stop()
    result["model"] = "pretrained LeNet5" if args.run is None else str(args.run)
    batches = after["batches"] - before["batches"]
    result["mean_batch"] = (after["images"] - before["images"]) / max(1, batches)
    rows = [
        [
            result["requests"],
            result["concurrency"],
            result["failures"],
            f"{result['p50_ms']:.2f}",
            f"{result['p99_ms']:.2f}",
            f"{result['max_ms']:.1f}",
            f"{result['requests_per_s']:.0f}",
            f"{result['mean_batch']:.2f}",
        ]
    ]
    headers = [
        "requests",
        "concurrent",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "req/s",
        "images/forward",
    ]
    table = common.format_table(headers, rows)
    print("\n" + table)
    for reason in result["failure_examples"]:
        print(f"failure: {reason}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, **info}, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.write:
        notes = [
            f"{result['model']} served by `tinydl serve` (uvicorn, one process) on 127.0.0.1; "
            f"clients: {args.concurrency} threads of this process with keep-alive connections, "
            f"each request one 28x28 PNG ({len(digit_png())} bytes) to POST /predict, after "
            f"{args.warmup} untimed requests. Latency: from sending to the last byte of the answer. "
            "images/forward: requests the micro-batcher put through one model call, on average. "
            f"uvicorn with {_http_stack()}.",
            "Every client sends its next request as soon as it has an answer, so latency is "
            "about clients / throughput (Little's law): it measures the server's throughput as "
            "much as the time of one prediction (compare --concurrency 1).",
        ]
        path = common.write_results("tinydl serve under load (`serve`)", info, table, notes)
        print(f"appended to {path}")
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
