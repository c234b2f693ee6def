"""Fixtures of the functional tests."""

import pytest

import tinydl as td


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}threads")
def threads(request):
    """Run the test with 1, 2 and 3 worker threads: a batch of 20 then runs its time loop in
    one share per thread (rows 0-9 and 10-19 with 2)."""
    before = td.get_num_threads()
    td.set_num_threads(request.param)
    yield request.param
    td.set_num_threads(before)
