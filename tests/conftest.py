"""Hypothesis profiles (dev 10, ci 30+, thorough 1000), the device fixtures and shared fixtures.

``backend`` runs a test once per device (``"cpu"``, ``"cuda"``); where CUDA is not available the
cuda case is skipped with what is missing (CuPy, or a GPU). ``cuda`` is for tests that only make
sense on a GPU. Both kinds of cuda case carry the ``gpu`` marker. ``--device cpu`` or
``--device cuda`` keeps the cases of one device (tests without a device count as cpu cases).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tests.devices import Backend
from tinydl.backend import cupy_backend

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=10, **_common)
settings.register_profile("ci", max_examples=30, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

DEVICES = ("cpu", "cuda")


def pytest_addoption(parser):
    parser.addoption(
        "--device", choices=("all", *DEVICES), default="all",
        help="run the cases of one device only (default: every device; cuda cases skip "
             "where CUDA is not available)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: the test runs on a CUDA GPU (skipped without one)")


def _device_of(item) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "backend" in callspec.params:
        return callspec.params["backend"]
    return "cuda" if "cuda" in getattr(item, "fixturenames", ()) else "cpu"


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--device")
    kept, dropped = [], []
    for item in items:
        device = _device_of(item)
        if device == "cuda":
            item.add_marker(pytest.mark.gpu)
        (kept if wanted in ("all", device) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _skip_without_cuda() -> None:
    reason = cupy_backend.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA GPU here: {reason}")


# NOTE: session scope: a Backend holds no state, and hypothesis refuses function-scoped
# fixtures in @given tests.
@pytest.fixture(scope="session", params=DEVICES)
def backend(request) -> Backend:
    if request.param == "cuda":
        _skip_without_cuda()
    return Backend(request.param)


@pytest.fixture(scope="session")
def cuda() -> Backend:
    _skip_without_cuda()
    return Backend("cuda")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
