"""tinydl.backend.memory: freed large arrays' memory is reused, not faulted in again.

Checked by counting the minor page faults (``getrusage``) of touching a freshly allocated
64 MiB array after an array of that size was freed: with the memory retained the pages are
already mapped; without, every page faults in again. Each case runs in its own interpreter,
since the setting is process-wide."""

import os
import subprocess
import sys

import pytest

import tinydl as td

glibc = pytest.mark.skipif(
    not td.backend.memory._mallopt(), reason="retaining freed memory needs glibc's mallopt"
)

FAULTS = """
import resource, sys
import numpy as np
import tinydl as td
if len(sys.argv) > 1:
    td.backend.retain_freed_memory(sys.argv[1] == "on")
def touch():
    a = np.empty(64 * 2**20, dtype=np.uint8)
    a[::4096] = 1  # one write per page
    return a
del_me = touch(); del del_me
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = touch()
print(td.backend.retaining_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(*args, env=None):
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, *args], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_freed_memory_is_reused_without_page_faults():
    on, faults_on = _faults("on")
    off, faults_off = _faults("off")
    assert on and not off
    assert faults_on < 50, f"{faults_on} page faults re-touching retained memory"
    # 64 MiB is 16384 pages of 4 KiB (32 with 2 MiB transparent huge pages)
    assert faults_off >= 30, f"only {faults_off} page faults with the memory returned"


@glibc
def test_on_by_default_and_the_environment_turns_it_off():
    assert _faults()[0] is True
    env = {**os.environ, "TINYDL_RETAIN_MEMORY": "0"}
    assert _faults(env=env)[0] is False


def test_returns_whether_it_took_effect():
    took = td.backend.retain_freed_memory(True)
    assert took == bool(td.backend.memory._mallopt())
    assert td.backend.retaining_freed_memory() is took
