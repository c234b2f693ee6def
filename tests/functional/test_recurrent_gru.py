"""The fused GRU time loop against its composed twin: values, gradients and second derivatives."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tinydl.functional.recurrent import gru_sequence_reference


def _inputs(rng, seq, batch, hidden, bias=True, dtype=np.float64):
    shapes = [(seq, batch, 3 * hidden), (batch, hidden), (3 * hidden, hidden), (3 * hidden,)]
    tensors = [td.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]
    return tensors if bias else tensors[:3] + [None]


def _results(fn, inputs, valid, reverse, vs, us=None):
    """Outputs, first-order gradients (recorded when ``us`` is given) and, with ``us``, the
    gradients of <first, us>: all as arrays."""
    wrt = [t for t in inputs if t is not None]
    out = fn(*inputs, valid, reverse)
    first = td.grad(out, wrt, grad_outputs=vs, create_graph=us is not None)
    second = td.grad(sum((g * u).sum() for g, u in zip(first, us)), wrt) if us else ()
    return [t.detach().numpy() for t in (*out, *first, *second)]


@given(
    seq=st.integers(1, 4),
    batch=st.integers(1, 3),
    hidden=st.integers(1, 3),
    reverse=st.booleans(),
    masked=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_composed_twin_to_second_order(seq, batch, hidden, reverse, masked, bias, seed):
    rng = np.random.default_rng(seed)
    inputs = _inputs(rng, seq, batch, hidden, bias)
    valid = rng.random((seq, batch, 1)) < 0.7 if masked else None
    vs = [td.tensor(rng.standard_normal(s)) for s in ((seq, batch, hidden), (batch, hidden))]
    us = [td.tensor(rng.standard_normal(t.shape)) for t in inputs if t is not None]
    got = _results(F.gru_sequence, inputs, valid, reverse, vs, us)
    want = _results(gru_sequence_reference, inputs, valid, reverse, vs, us)
    assert len(got) == len(want) == 2 + 2 * len(us)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


def test_masked_steps_keep_the_state_and_output_zero():
    rng = np.random.default_rng(6)
    inputs = _inputs(rng, 3, 2, 2)
    valid = np.array([[True, True], [True, False], [True, False]])[:, :, None]
    with td.no_grad():
        out, h_n = F.gru_sequence(*inputs, valid)
        full, _ = F.gru_sequence(*inputs)
    np.testing.assert_array_equal(out.numpy()[1:, 1], 0)
    np.testing.assert_allclose(h_n.numpy()[1], full.numpy()[0, 1], rtol=1e-15)
    np.testing.assert_allclose(h_n.numpy()[0], full.numpy()[2, 0], rtol=1e-15)


def test_gradcheck_and_gradgradcheck():
    rng = np.random.default_rng(3)
    inputs = _inputs(rng, 3, 2, 2)
    valid = np.array([[True, True], [True, False], [False, True]])[:, :, None]
    for reverse in (False, True):
        fn = lambda *xs, r=reverse: F.gru_sequence(*xs, valid, r)  # noqa: E731
        assert td.gradcheck(fn, inputs)
        assert td.gradgradcheck(fn, inputs)


def test_float32_stays_float32_and_large_inputs_stay_finite():
    gi, h, w, b = _inputs(np.random.default_rng(4), 3, 2, 2, dtype=np.float32)
    big = td.tensor(gi.detach().numpy() * 1e4, requires_grad=True)
    with np.errstate(all="raise"):
        out, h_n = F.gru_sequence(big, h, w, b)
        (out.sum() + h_n.sum()).backward()
    assert {t.dtype for t in (out, h_n, big.grad, h.grad, w.grad, b.grad)} == {np.dtype(np.float32)}
    ref, _ = gru_sequence_reference(big.detach(), h.detach(), w.detach(), b.detach())
    np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)


def test_shape_errors_name_the_op_and_the_shapes():
    gi, h, w, b = _inputs(np.random.default_rng(4), 3, 2, 2)
    with pytest.raises(
        td.ShapeError,
        match=r"gru_sequence: expected gi \(T, B, 3H\).*got gi \(3, 2, 6\), h0 \(2, 3\), "
        r"w_hh \(6, 2\), b_hh \(6,\)",
    ):
        F.gru_sequence(gi, td.zeros(2, 3), w, b)
    with pytest.raises(td.ShapeError, match=r"gru_sequence: .*w_hh \(8, 2\), b_hh \(6,\)"):
        F.gru_sequence(gi, h, td.zeros(8, 2), b)
    with pytest.raises(td.ShapeError, match=r"gru_sequence: .*b_hh \(4,\)"):
        F.gru_sequence(gi, h, w, td.zeros(4))
    with pytest.raises(
        td.ShapeError, match=r"gru_sequence: valid must have shape \(3, 2, 1\), got \(3, 2\)"
    ):
        F.gru_sequence(gi, h, w, b, np.ones((3, 2), bool))


@pytest.mark.parametrize("reverse", [False, True])
def test_split_across_threads_matches_the_twin(threads, reverse):
    rng = np.random.default_rng(5)
    inputs = _inputs(rng, 4, 20, 3)
    valid = rng.random((4, 20, 1)) < 0.7
    vs = [td.tensor(rng.standard_normal(s)) for s in ((4, 20, 3), (20, 3))]
    # first order only: the array backward
    got = _results(F.gru_sequence, inputs, valid, reverse, vs)
    want = _results(gru_sequence_reference, inputs, valid, reverse, vs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
