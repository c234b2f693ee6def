"""House rules checked in CI: ruff clean, files small, optional imports confined."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "tinydl").rglob("*.py"))


def test_ruff_clean():
    beside = pathlib.Path(sys.executable).with_name("ruff")  # a venv that is not activated
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    result = subprocess.run([ruff, "check", "tinydl", "tests", "examples", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_stay_small(path):
    limit = 600 if path.name == "autograd.py" else 450  # the core keeps Tensor and engine together
    lines = len(path.read_text().splitlines())
    assert lines <= limit, f"{path.name} has {lines} lines; split it by topic (limit {limit})"


def test_import_needs_only_numpy():
    code = ("import sys; import tinydl; bad = {'torch', 'scipy', 'hypothesis', 'cupy', 'mpi4py'} & "
            "set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
