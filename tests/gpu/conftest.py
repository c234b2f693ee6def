"""Fixtures for the device tests.

``backend`` runs a test once on ``"cpu"`` and once on ``"cuda"``; the cuda case is skipped, with
what is missing (CuPy, or a GPU), where CUDA is not available, and carries the ``gpu`` marker
(``pytest -m gpu`` selects the GPU cases). ``cuda`` is for tests that only make sense on a GPU.
``cuda_kernels_on_cpu`` runs the CUDA kernel bodies of ``tinydl.backend.kernels.cuda`` on the
CPU (``cuda_harness``), so their arithmetic is tested on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gpu_backend import Backend

import tinydl as td


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: the test runs on a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:  # tests here that take the ``cuda`` fixture are GPU tests too
        if "cuda" in getattr(item, "fixturenames", ()) and here in Path(item.path).parents:
            item.add_marker(pytest.mark.gpu)


def _skip_without_cuda() -> None:
    if not td.cuda.is_available():
        pytest.skip(f"no CUDA GPU here: {td.cuda.why_unavailable()}")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def backend(request) -> Backend:
    if request.param == "cuda":
        _skip_without_cuda()
    return Backend(request.param)


@pytest.fixture
def cuda() -> Backend:
    _skip_without_cuda()
    return Backend("cuda")


@pytest.fixture
def cuda_kernels_on_cpu(monkeypatch):
    """``tinydl.backend.kernels.cuda`` with NumPy in place of CuPy and each kernel body compiled
    for the CPU by the system C++ compiler."""
    from cuda_harness import CXX, harness_kernel

    from tinydl.backend.kernels import cuda as cuda_kernels

    if CXX is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) to run the CUDA kernel bodies")
    monkeypatch.setattr(cuda_kernels, "_cupy", lambda: np)
    monkeypatch.setattr(cuda_kernels, "_kernel", harness_kernel)
    return cuda_kernels
