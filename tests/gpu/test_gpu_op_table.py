"""Every differentiable public op, from the op table of ``tests/hardening``, on the backend: for
hypothesis-drawn cases the device gives the CPU's forward and input gradients (float64 and
float32). Skipped when the op table is not importable (it is developed beside this suite)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from gpu_backend import Backend

CPU = Backend("cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardening"))
try:
    import op_table
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ENTRIES = list(op_table.ENTRIES)
except (ImportError, AttributeError) as exc:  # the table (or hypothesis) is missing
    op_table, ENTRIES = None, []
    REASON = f"the op table of tests/hardening does not import ({exc})"
else:
    REASON = ""

EXAMPLES = {"cpu": 1, "cuda": 4}  # the cpu case only proves the plumbing


def _run(b: Backend, op, case, dtype, seed: int):
    """Output and input gradients of ``op`` on ``b``, for a seeded upstream gradient."""
    xs = [b.tensor(np.asarray(a, np.float64).astype(dtype), requires_grad=True)
          for a in case.arrays]
    kw = {}
    for k, v in case.kw.items():
        if isinstance(v, np.ndarray):
            v = b.tensor(v.astype(dtype) if v.dtype.kind == "f" else v)
        kw[k] = v
    out = op.fn(*xs, **kw)
    assert out.device == b.device, f"{op.id}: output on {out.device}"
    upstream = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
    out.backward(b.tensor(upstream))
    grads = [np.zeros(x.shape) if x.grad is None else b.numpy(x.grad) for x in xs]
    return b.numpy(out), grads


def _close(got, want, rtol, atol, what):
    scale = max(1.0, float(np.nanmax(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


def check_on(b: Backend, op, case, seed: int = 0):
    for dtype, (rtol, atol) in ((np.float64, (1e-9, 1e-12)), (np.float32, op.f32_grad)):
        want, want_grads = _run(CPU, op, case, dtype, seed)
        got, grads = _run(b, op, case, dtype, seed)
        _close(got, want, rtol, atol, f"{op.id} {np.dtype(dtype)} forward")
        for i, (g, w) in enumerate(zip(grads, want_grads)):
            _close(g, w, rtol, atol, f"{op.id} {np.dtype(dtype)} gradient {i}")


@pytest.mark.skipif(op_table is None, reason=REASON)
@pytest.mark.parametrize("op", ENTRIES, ids=[op.id for op in ENTRIES])
def test_op_table_entry_on_the_backend(backend, op):
    @settings(max_examples=EXAMPLES[backend.name], deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        check_on(backend, op, data.draw(op.case, label="case"))

    run()
