"""The test stage of ``gpu_check.py``: the device-parametrised suite on the GPU machine.

Results are streamed (``-v``: one line per test as it ends, ``-rfE`` failure summary,
``--junitxml``), so a run killed by the device's time limit still shows what passed and what
failed; pytest-xdist spreads the tests over the CPUs when it is installed there."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the device-parametrised suite (its cuda cases run on a GPU) and the GPU-only tests
TESTS = [
    "tests/gpu",
    "tests/functional",
    "tests/layers",
    "tests/optim",
    "tests/testing",
    "tests/hardening/test_op_table.py",
    "tests/test_tensor.py",
    "tests/test_style.py::test_import_needs_only_numpy",
    "tests/hardening/test_reproducibility.py::test_manual_seed_seeds_cupy_when_present",
]


def command(out: Path, workers: int) -> list[str]:
    paths = [t for t in TESTS if (ROOT / t.split("::")[0]).exists()]
    # NOTE: no --device filter: the tests without a device (import checks, seeding) count as cpu
    # cases and would be left out; the cpu cases add about a minute
    cmd = [sys.executable, "-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider",
           f"--junitxml={out / 'junit_gpu.xml'}"]
    if workers > 1 and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", str(workers)]
    return cmd + paths


def run_tests(timeout: int, out: Path | None, log=print, workers: int = 8) -> dict:
    out = out or Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(out, workers)
    # NOTE: the dev profile (10 examples a property): ci's 50-100 would not fit the device time
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "dev")}
    log_path = out / "pytest_gpu.log"
    start = time.perf_counter()
    with open(log_path, "w") as f:
        f.write(" ".join(cmd) + "\n\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            f.write(f"\n[gpu_check] the tests ran past {timeout} s and were stopped\n")
    seconds = time.perf_counter() - start
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    failures = sorted({ln for ln in lines if ln.startswith(("FAILED", "ERROR"))})
    passed = sum(" PASSED" in ln for ln in lines)
    log("\n".join(failures[:40]))
    log(f"pytest ({seconds:.0f} s, exit {rc}, {passed} passed lines): {summary}")
    return {"command": " ".join(cmd[1:]), "exit": rc, "summary": summary,
            "seconds": round(seconds, 1), "failures": failures, "passed": passed}
