"""``cuda_kernels_on_cpu`` runs the CUDA kernel bodies of ``tinydl.backend.kernels.cuda`` on the
CPU (``cuda_harness``), so their arithmetic is tested on every machine. The device fixtures
(``backend``, ``cuda``) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def cuda_kernels_on_cpu(monkeypatch):
    """``tinydl.backend.kernels.cuda`` with NumPy in place of CuPy and each kernel body compiled
    for the CPU by the system C++ compiler."""
    from tests.gpu.cuda_harness import CXX, harness_kernel
    from tinydl.backend.kernels import cuda as cuda_kernels

    if CXX is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) to run the CUDA kernel bodies")
    monkeypatch.setattr(cuda_kernels, "_cupy", lambda: np)
    monkeypatch.setattr(cuda_kernels, "_kernel", harness_kernel)
    return cuda_kernels
