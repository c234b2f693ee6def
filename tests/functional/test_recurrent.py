"""The fused LSTM step against its composed twin: values, gradients and second derivatives."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tinydl.functional.recurrent import lstm_pointwise_reference


def _inputs(rng, lead, hidden, dtype=np.float64, scale=2.0):
    gates = td.tensor((scale * rng.standard_normal(lead + (4 * hidden,))).astype(dtype),
                      requires_grad=True)
    c = td.tensor(rng.standard_normal(lead + (hidden,)).astype(dtype), requires_grad=True)
    return gates, c


@given(lead=st.sampled_from([(), (1,), (3,), (2, 2)]), hidden=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_fused_matches_composed_twin_to_second_order(lead, hidden, seed):
    rng = np.random.default_rng(seed)
    gates, c = _inputs(rng, lead, hidden)
    vs = [td.tensor(rng.standard_normal(lead + (hidden,))) for _ in range(2)]
    u = [td.tensor(rng.standard_normal(t.shape)) for t in (gates, c)]
    results = []
    for fn in (F.lstm_pointwise, lstm_pointwise_reference):
        out = fn(gates, c)
        first = td.grad(out, [gates, c], grad_outputs=vs, create_graph=True)
        second = td.grad(sum((g * w).sum() for g, w in zip(first, u)), [gates, c])
        results.append([t.detach().numpy() for t in (*out, *first, *second)])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_gradcheck_and_gradgradcheck():
    gates, c = _inputs(np.random.default_rng(0), (2,), 3)
    assert td.gradcheck(lambda g, c: F.lstm_pointwise(g, c), [gates, c])
    assert td.gradgradcheck(lambda g, c: F.lstm_pointwise(g, c), [gates, c])


def test_large_preactivations_stay_finite_and_float32_stays_float32():
    gates, c = _inputs(np.random.default_rng(1), (4,), 5, np.float32, scale=1e4)
    with np.errstate(all="raise"):
        h, c_new = F.lstm_pointwise(gates, c)
        (h.sum() + c_new.sum()).backward()
    assert h.dtype == c_new.dtype == gates.grad.dtype == c.grad.dtype == np.float32
    ref_h, ref_c = lstm_pointwise_reference(gates.detach(), c.detach())
    np.testing.assert_allclose(h.detach().numpy(), ref_h.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c_new.detach().numpy(), ref_c.numpy(), rtol=1e-6, atol=1e-6)
    assert np.isfinite(gates.grad.numpy()).all() and np.isfinite(c.grad.numpy()).all()


def test_c_without_grad_gets_none():
    gates, _ = _inputs(np.random.default_rng(2), (2,), 3)
    c = td.zeros(2, 3, dtype=td.float64)
    F.lstm_pointwise(gates, c)[0].sum().backward()
    assert gates.grad is not None and c.grad is None


def test_shape_errors_name_both_shapes():
    with pytest.raises(td.ShapeError, match=r"lstm_pointwise: gates must have shape \(\*, 4H\) "
                                            r"for c of shape \(\*, H\), got gates \(2, 7\) and "
                                            r"c \(2, 2\)"):
        F.lstm_pointwise(td.zeros(2, 7), td.zeros(2, 2))
    with pytest.raises(td.ShapeError, match="lstm_pointwise"):
        F.lstm_pointwise(td.zeros(3, 8), td.zeros(2, 2))
