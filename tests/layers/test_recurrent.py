"""RNN, LSTM, GRU and their cells against PyTorch (its state dicts loaded one to one), variable
lengths against packed sequences, gradients against central differences, and the errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
from tinydl import layers as nn

torch = pytest.importorskip("torch", reason="recurrent layers are compared with PyTorch")
tnn = torch.nn

# name -> (tinydl class, torch class, extra kwargs, state is an (h, c) pair)
KINDS = {
    "rnn_tanh": (nn.RNN, tnn.RNN, {}, False),
    "rnn_relu": (nn.RNN, tnn.RNN, {"nonlinearity": "relu"}, False),
    "lstm": (nn.LSTM, tnn.LSTM, {}, True),
    "gru": (nn.GRU, tnn.GRU, {}, False),
}
CELLS = {
    "rnn_tanh": (nn.RNNCell, tnn.RNNCell, {}, False),
    "rnn_relu": (nn.RNNCell, tnn.RNNCell, {"nonlinearity": "relu"}, False),
    "lstm": (nn.LSTMCell, tnn.LSTMCell, {}, True),
    "gru": (nn.GRUCell, tnn.GRUCell, {}, False),
}


def pair_of(kind, dtype=torch.float32, **kw):
    """A torch module and a tinydl one holding its state dict."""
    ours_cls, theirs_cls, extra, pair = kind
    torch.manual_seed(0)
    theirs = theirs_cls(**kw, **extra).to(dtype)
    ours = ours_cls(**kw, **extra, dtype=np.float32 if dtype == torch.float32 else np.float64)
    result = ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert not result.missing_keys and not result.unexpected_keys
    return ours, theirs, pair


def flat(out, pair):
    """(output, h_n) or (output, (h_n, c_n)) as a flat list."""
    y, h = out
    return [y, *h] if pair else [y, h]


def as_np(t):
    return t.detach().numpy()


def states(rng, pair, shape, dtype):
    n = 2 if pair else 1
    return [rng.standard_normal(shape).astype(dtype) for _ in range(n)]


def hx_args(arrays, lib, pair):
    """Leaf tensors of ``lib`` for the initial states, and hx as the layer takes it (or None)."""
    made = [lib.tensor(a, requires_grad=True) for a in arrays]
    if not made:
        return made, None
    return made, (tuple(made) if pair else made[0])


def run_both(ours, theirs, pair, x, h0, backend=None, **kw):
    """Forward both with the same input and initial state; backward the same random cotangent.
    Returns the flat outputs and the gradients of (input, *initial states), ours then theirs."""
    put = backend.tensor if backend is not None else td.tensor
    xo, xt = put(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ho = [put(a, requires_grad=True) for a in h0]
    hts = [torch.tensor(a, requires_grad=True) for a in h0]
    out_o = flat(ours(xo, tuple(ho) if pair else ho[0], **kw), pair)
    out_t = theirs(xt, tuple(hts) if pair else hts[0])
    rng = np.random.default_rng(7)
    gs = [rng.standard_normal(o.shape).astype(x.dtype) for o in out_o]
    lo = sum((o * put(g)).sum() for o, g in zip(out_o, gs))
    lo.backward()
    return out_o, [xo, *ho], gs, (out_t, [xt, *hts])


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_state_dict_from_pytorch_float32(backend, name, bidirectional, batch_first):
    kw = dict(
        input_size=3,
        hidden_size=4,
        num_layers=2,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )
    ours, theirs, pair = pair_of(KINDS[name], **kw)
    ours.to(backend.name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3)).astype(np.float32)
    h0 = states(rng, pair, (2 * (2 if bidirectional else 1), 2, 4), np.float32)
    out_o, _, _, (out_t, _) = run_both(ours, theirs, pair, x, h0, backend)
    for o, t in zip(out_o, flat(out_t, pair)):
        assert o.dtype == np.float32 and o.shape == tuple(t.shape)
        np.testing.assert_allclose(backend.numpy(o), as_np(t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_match_pytorch_float64(name, bidirectional):
    kw = dict(
        input_size=3, hidden_size=4, num_layers=2, bidirectional=bidirectional, batch_first=True
    )
    ours, theirs, pair = pair_of(KINDS[name], torch.float64, **kw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 3))
    h0 = states(rng, pair, (2 * (2 if bidirectional else 1), 3, 4), np.float64)
    out_o, leaves_o, gs, (out_t, leaves_t) = run_both(ours, theirs, pair, x, h0)
    sum((t * torch.tensor(g)).sum() for t, g in zip(flat(out_t, pair), gs)).backward()
    for o, t in zip(out_o, flat(out_t, pair)):
        np.testing.assert_allclose(as_np(o), as_np(t), rtol=1e-12, atol=1e-12)
    for o, t in zip(leaves_o, leaves_t):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
    theirs_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), theirs_params[key].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=key
        )


def packed_reference(theirs, x, lens, h0, pair, batch_first):
    """PyTorch's answer for padded sequences: pack, run, pad back to the full length."""
    rnn = torch.nn.utils.rnn
    xt = torch.tensor(x, requires_grad=True)
    packed = rnn.pack_padded_sequence(
        xt, torch.tensor(lens), batch_first=batch_first, enforce_sorted=False
    )
    hts = [torch.tensor(a) for a in h0]
    y, h = theirs(packed, tuple(hts) if pair else hts[0])
    y, _ = rnn.pad_packed_sequence(
        y, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0]
    )
    return xt, [y, *h] if pair else [y, h]


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("by", ["lengths", "mask"])
def test_variable_lengths_match_packed_sequences(name, bidirectional, batch_first, by):
    kw = dict(
        input_size=3,
        hidden_size=4,
        num_layers=2,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )
    ours, theirs, pair = pair_of(KINDS[name], torch.float64, **kw)
    rng = np.random.default_rng(2)
    lens = [4, 6, 1, 3]
    x = rng.standard_normal((4, 6, 3) if batch_first else (6, 4, 3))
    h0 = states(rng, pair, (2 * (2 if bidirectional else 1), 4, 4), np.float64)
    xt, ref = packed_reference(theirs, x, lens, h0, pair, batch_first)
    mask = np.arange(6)[None, :] < np.array(lens)[:, None]
    arg = {"lengths": np.array(lens)} if by == "lengths" else {"mask": td.tensor(mask)}
    xo = td.tensor(x, requires_grad=True)
    hos = [td.tensor(a) for a in h0]
    out = flat(ours(xo, tuple(hos) if pair else hos[0], **arg), pair)
    for o, t in zip(out, ref):
        np.testing.assert_allclose(as_np(o), as_np(t), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(ref[0].shape)
    (ref[0] * torch.tensor(g)).sum().backward()
    (out[0] * td.tensor(g)).sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_full_lengths_equal_no_lengths_and_zero_length_keeps_h0():
    m = nn.GRU(2, 3, bidirectional=True, dtype=np.float64)
    x = td.randn(4, 2, 2, dtype=td.float64)
    y, h = m(x)
    y2, h2 = m(x, lengths=[4, 4])
    np.testing.assert_array_equal(y.detach().numpy(), y2.detach().numpy())
    h0 = td.randn(2, 2, 3, dtype=td.float64)
    y3, h3 = m(x, h0, lengths=[0, 4])
    assert not y3.detach().numpy()[:, 0].any()
    np.testing.assert_array_equal(h3.detach().numpy()[:, 0], h0.numpy()[:, 0])


def test_a_masked_step_in_the_middle_is_skipped():
    """A False in the mask skips that step: the same as running the sequence without it."""
    m = nn.LSTM(2, 3, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((5, 1, 2))
    mask = np.array([[True, True, False, True, True]])
    y, (h, c) = m(td.tensor(x), mask=mask)
    y_ref, (h_ref, c_ref) = m(td.tensor(np.delete(x, 2, axis=0)))
    np.testing.assert_allclose(h.detach().numpy(), h_ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(c.detach().numpy(), c_ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        np.delete(y.detach().numpy(), 2, axis=0), y_ref.detach().numpy(), rtol=1e-12
    )
    assert not y.detach().numpy()[2].any()


@pytest.mark.parametrize("name", KINDS)
def test_unbatched_input_matches_pytorch(name):
    ours, theirs, pair = pair_of(
        KINDS[name], input_size=3, hidden_size=2, num_layers=2, bidirectional=True
    )
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    h0 = states(rng, pair, (4, 2), np.float32)
    out_o, _, _, (out_t, _) = run_both(ours, theirs, pair, x, h0)
    for o, t in zip(out_o, flat(out_t, pair)):
        assert o.shape == tuple(t.shape)
        np.testing.assert_allclose(as_np(o), as_np(t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cells_match_pytorch(name, batched, with_hx):
    ours, theirs, pair = pair_of(CELLS[name], torch.float64, input_size=3, hidden_size=4)
    rng = np.random.default_rng(5)
    batch = (2,) if batched else ()
    x = rng.standard_normal(batch + (3,))
    h0 = states(rng, pair, batch + (4,), np.float64) if with_hx else []
    xo, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    hos, ho = hx_args(h0, td, pair)
    hts, ht = hx_args(h0, torch, pair)
    out_o, out_t = ours(xo, ho), theirs(xt, ht)
    out_o, out_t = (list(out_o), list(out_t)) if pair else ([out_o], [out_t])
    gs = [rng.standard_normal(o.shape) for o in out_o]
    sum((o * td.tensor(g)).sum() for o, g in zip(out_o, gs)).backward()
    sum((t * torch.tensor(g)).sum() for t, g in zip(out_t, gs)).backward()
    for o, t in zip(out_o, out_t):
        np.testing.assert_allclose(as_np(o), as_np(t), rtol=1e-12, atol=1e-12)
    for o, t in zip([xo, *hos], [xt, *hts]):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
    theirs_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), theirs_params[key].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=key
        )


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_names_shapes_and_init_are_pytorchs(name, bidirectional):
    ours_cls, theirs_cls, extra, _ = KINDS[name]
    kw = dict(input_size=3, hidden_size=64, num_layers=2, bidirectional=bidirectional, **extra)
    td.manual_seed(0)
    ours, theirs = ours_cls(**kw), theirs_cls(**kw)
    shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    bound = 1 / np.sqrt(64)  # U(-1/sqrt(hidden), 1/sqrt(hidden)) for every parameter
    for key, p in ours.named_parameters():
        a = p.detach().numpy()
        assert a.dtype == np.float32
        assert 0.9 * bound < np.abs(a).max() <= bound, key
        assert abs(a.mean()) < 0.3 * bound, key
    no_bias = ours_cls(3, 5, bias=False, **extra)
    assert not [k for k in no_bias.state_dict() if "bias" in k]


def test_float32_kept_float32():
    m = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    x = td.randn(5, 2, 3, requires_grad=True)
    y, (h, c) = m(x, lengths=[5, 2])
    assert {y.dtype, h.dtype, c.dtype} == {np.dtype(np.float32)}
    (y.sum() + h.sum() + c.sum()).backward()
    assert x.grad.dtype == np.float32
    assert {p.grad.dtype for p in m.parameters()} == {np.dtype(np.float32)}


def test_dropout_between_layers_only_in_training():
    td.manual_seed(0)
    m = nn.GRU(3, 8, num_layers=2, dropout=0.5, dtype=np.float64)
    x = td.randn(4, 2, 3, dtype=td.float64)
    m.eval()
    y_eval, _ = m(x)
    m.train()
    y_train, _ = m(x)
    assert not np.allclose(y_eval.detach().numpy(), y_train.detach().numpy())
    m.dropout = 0.0
    np.testing.assert_array_equal(m(x)[0].detach().numpy(), y_eval.detach().numpy())


def _sequence_case(data):
    mode = data.draw(st.sampled_from(sorted(KINDS)), label="kind")
    ours_cls, _, extra, pair = KINDS[mode]
    seq, batch = data.draw(st.integers(1, 3), label="seq"), data.draw(st.integers(1, 2))
    size, hidden = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    bidirectional = data.draw(st.booleans(), label="bidirectional")
    lengths = data.draw(st.lists(st.integers(1, seq), min_size=batch, max_size=batch))
    td.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    m = ours_cls(size, hidden, bidirectional=bidirectional, dtype=np.float64, **extra)
    rng = np.random.default_rng(0)
    x = td.tensor(rng.standard_normal((seq, batch, size)), requires_grad=True)
    h0 = [
        td.tensor(
            rng.standard_normal(((2 if bidirectional else 1), batch, hidden)), requires_grad=True
        )
        for _ in range(2 if pair else 1)
    ]
    return m, x, h0, lengths, pair


@given(data=st.data())
def test_sequence_gradcheck(data):
    m, x, h0, lengths, pair = _sequence_case(data)

    def fn(x, *rest):
        hx = tuple(rest[:2]) if pair else rest[0]
        return tuple(flat(m(x, hx, lengths=lengths), pair))

    td.gradcheck(fn, [x, *h0, *m.parameters()])


@pytest.mark.parametrize("name", CELLS)
def test_cell_gradgradcheck(name):
    ours_cls, _, extra, pair = CELLS[name]
    td.manual_seed(1)
    m = ours_cls(2, 2, dtype=np.float64, **extra)
    rng = np.random.default_rng(6)
    x = td.tensor(rng.standard_normal((1, 2)), requires_grad=True)
    hs = [td.tensor(rng.standard_normal((1, 2)), requires_grad=True) for _ in range(1 + pair)]

    def fn(x, *rest):
        hx = tuple(rest[:2]) if pair else rest[0]
        out = m(x, hx)
        return tuple(out) if pair else out

    td.gradgradcheck(fn, [x, *hs, m.weight_hh])


def test_errors_name_the_layer_argument_and_shapes():
    m = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x = td.randn(2, 5, 3)
    with pytest.raises(
        td.ShapeError,
        match=r"LSTM: input has 6 features \(shape \(2, 5, 6\)\) "
        r"but input_size is 3",
    ):
        m(td.randn(2, 5, 6))
    with pytest.raises(td.ShapeError, match=r"LSTM: input must be 3-D \(batch, seq, features\)"):
        m(td.randn(2, 2, 5, 3))
    with pytest.raises(
        td.ShapeError,
        match=r"LSTM: hx \(c_0\) must have shape \(2, 2, 4\), "
        r"got \(2, 3, 4\)",
    ):
        m(x, (td.zeros(2, 2, 4), td.zeros(2, 3, 4)))
    with pytest.raises(TypeError, match="LSTM: hx must be a pair"):
        m(x, td.zeros(2, 2, 4))
    with pytest.raises(
        td.ShapeError,
        match=r"GRU: hx \(h_0\) must have shape \(1, 2, 4\), "
        r"got \(2, 4\)",
    ):
        nn.GRU(3, 4)(td.randn(5, 2, 3), td.zeros(2, 4))
    with pytest.raises(ValueError, match=r"LSTM: lengths must lie in \[0, 5\].*max 6"):
        m(x, lengths=[6, 2])
    with pytest.raises(
        td.ShapeError,
        match=r"LSTM: lengths must be 1-D .* \(2,\), got shape "
        r"\(3,\)",
    ):
        m(x, lengths=[1, 2, 3])
    with pytest.raises(td.DTypeError, match="LSTM: lengths must be integers"):
        m(x, lengths=[1.0, 2.0])
    with pytest.raises(
        td.ShapeError,
        match=r"LSTM: mask must have shape \(batch, seq\) = "
        r"\(2, 5\), got \(5, 2\)",
    ):
        m(x, mask=np.ones((5, 2), bool))
    with pytest.raises(td.DTypeError, match="LSTM: mask must be a bool array"):
        m(x, mask=np.ones((2, 5)))
    with pytest.raises(ValueError, match="LSTM: lengths and mask disagree"):
        m(x, lengths=[5, 5], mask=np.arange(5)[None, :].repeat(2, 0) < 3)
    with pytest.raises(ValueError, match="RNN: lengths and mask need batched input"):
        nn.RNN(3, 4)(td.randn(5, 3), lengths=[5])


def test_cell_and_constructor_errors():
    with pytest.raises(
        td.ShapeError,
        match=r"GRUCell: input must be \(batch, 3\) or \(3,\).*"
        r"got shape \(2, 4\)",
    ):
        nn.GRUCell(3, 4)(td.randn(2, 4))
    with pytest.raises(
        td.ShapeError,
        match=r"LSTMCell: hx\[1\] \(c\) must have shape \(2, 4\), "
        r"got \(4,\)",
    ):
        nn.LSTMCell(3, 4)(td.randn(2, 3), (td.zeros(2, 4), td.zeros(4)))
    with pytest.raises(ValueError, match="RNNCell: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="RNN: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"LSTM: dropout must be in \[0, 1\]"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="GRU: num_layers must be a positive int"):
        nn.GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="LSTM: input_size and hidden_size must be positive"):
        nn.LSTM(0, 4)
