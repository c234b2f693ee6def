"""The fused LSTM step against its composed twin: values, gradients and second derivatives."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tinydl.functional.recurrent import lstm_pointwise_reference


def _inputs(rng, lead, hidden, dtype=np.float64, scale=2.0):
    gates = td.tensor(
        (scale * rng.standard_normal(lead + (4 * hidden,))).astype(dtype), requires_grad=True
    )
    c = td.tensor(rng.standard_normal(lead + (hidden,)).astype(dtype), requires_grad=True)
    return gates, c


@given(
    lead=st.sampled_from([(), (1,), (3,), (2, 2)]),
    hidden=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
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
    with pytest.raises(
        td.ShapeError,
        match=r"lstm_pointwise: gates must have shape \(\*, 4H\) "
        r"for c of shape \(\*, H\), got gates \(2, 7\) and "
        r"c \(2, 2\)",
    ):
        F.lstm_pointwise(td.zeros(2, 7), td.zeros(2, 2))
    with pytest.raises(td.ShapeError, match="lstm_pointwise"):
        F.lstm_pointwise(td.zeros(3, 8), td.zeros(2, 2))


def _sequence_inputs(rng, seq, batch, hidden, dtype=np.float64):
    shapes = [(seq, batch, 4 * hidden), (batch, hidden), (batch, hidden), (4 * hidden, hidden)]
    return [td.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


@given(
    seq=st.integers(1, 4),
    batch=st.integers(1, 3),
    hidden=st.integers(1, 3),
    reverse=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sequence_matches_composed_twin_to_second_order(seq, batch, hidden, reverse, masked, seed):
    rng = np.random.default_rng(seed)
    inputs = _sequence_inputs(rng, seq, batch, hidden)
    valid = rng.random((seq, batch, 1)) < 0.7 if masked else None
    vs = [
        td.tensor(rng.standard_normal(s))
        for s in ((seq, batch, hidden), (batch, hidden), (batch, hidden))
    ]
    us = [td.tensor(rng.standard_normal(t.shape)) for t in inputs]
    results = []
    for fn in (F.lstm_sequence, F.recurrent.lstm_sequence_reference):
        out = fn(*inputs, valid, reverse)
        first = td.grad(out, inputs, grad_outputs=vs, create_graph=True)
        second = td.grad(sum((g * u).sum() for g, u in zip(first, us)), inputs)
        results.append([t.detach().numpy() for t in (*out, *first, *second)])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_sequence_gradcheck_and_gradgradcheck():
    rng = np.random.default_rng(3)
    inputs = _sequence_inputs(rng, 3, 2, 2)
    valid = np.array([[True, True], [True, False], [False, True]])[:, :, None]
    for reverse in (False, True):
        assert td.gradcheck(lambda *xs, r=reverse: F.lstm_sequence(*xs, valid, r), inputs)
        assert td.gradgradcheck(lambda *xs, r=reverse: F.lstm_sequence(*xs, valid, r), inputs)


def test_sequence_float32_and_shape_errors():
    gi, h, c, w = _sequence_inputs(np.random.default_rng(4), 3, 2, 2, np.float32)
    out, h_n, c_n = F.lstm_sequence(gi, h, c, w)
    (out.sum() + h_n.sum() + c_n.sum()).backward()
    assert {t.dtype for t in (out, h_n, c_n, gi.grad, h.grad, c.grad, w.grad)} == {
        np.dtype(np.float32)
    }
    with pytest.raises(
        td.ShapeError,
        match=r"lstm_sequence: expected gi \(T, B, 4H\).*got gi "
        r"\(3, 2, 8\), h0 \(2, 3\)",
    ):
        F.lstm_sequence(gi, td.zeros(2, 3), c, w)
    with pytest.raises(
        td.ShapeError,
        match=r"lstm_sequence: valid must have shape \(3, 2, 1\), "
        r"got \(3, 2\)",
    ):
        F.lstm_sequence(gi, h, c, w, np.ones((3, 2), bool))


@pytest.mark.parametrize("reverse", [False, True])
def test_sequence_split_across_threads_matches_the_twin(threads, reverse):
    rng = np.random.default_rng(5)
    inputs = _sequence_inputs(rng, 4, 20, 3)
    valid = rng.random((4, 20, 1)) < 0.7
    vs = [td.tensor(rng.standard_normal(s)) for s in ((4, 20, 3), (20, 3), (20, 3))]
    results = []
    for fn in (F.lstm_sequence, F.recurrent.lstm_sequence_reference):
        out = fn(*inputs, valid, reverse)
        grads = td.grad(out, inputs, grad_outputs=vs)  # first order: the array backward
        results.append([t.detach().numpy() for t in (*out, *grads)])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
