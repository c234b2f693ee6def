"""MultiheadAttention against PyTorch 2.13's: its state dict loaded one to one, outputs and
attention weights in float32 to 1e-5, gradients of inputs and parameters in float64."""

import numpy as np
import pytest

import tinydl as td
from tinydl import layers as nn
from tinydl.errors import ShapeError

torch = pytest.importorskip("torch", reason="the attention layer tests compare with PyTorch")

E, H, N, L, S = 8, 2, 3, 5, 4


def twin(dtype, seed=0, **kw):
    """A PyTorch MultiheadAttention and a tinydl one with the same parameters."""
    torch.manual_seed(seed)
    ours = nn.MultiheadAttention(E, H, **kw)
    theirs = torch.nn.MultiheadAttention(E, H, **kw).to(getattr(torch, np.dtype(dtype).name))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.to(dtype)
    return ours, theirs


def masks(rng, kind):
    """key_padding_mask (N, S) and attn_mask (L, S), PyTorch's convention (True: masked), with
    at least key 0 open to every query (a fully masked row is NaN in PyTorch's weights)."""
    kpm = rng.random((N, S)) > 0.6
    am = rng.random((L, S)) > 0.6
    kpm[:, 0] = am[:, 0] = False
    if kind == "float":
        return np.where(kpm, -np.inf, 0.0), np.where(am, -1e9, rng.standard_normal((L, S)))
    return kpm, am


def inputs(rng, batch_first, dtype, self_attention=False):
    q = rng.standard_normal((N, L, E) if batch_first else (L, N, E)).astype(dtype)
    if self_attention:
        return q, q, q
    kv = [rng.standard_normal((N, S, E) if batch_first else (S, N, E)).astype(dtype) for _ in "kv"]
    return (q, *kv)


def run(ours, theirs, arrays, dtype, upstream=None, **kw):
    """Forward (and backward with ``upstream``) through both; returns ((out, w, grads),
    (out, w, grads)), the grads of the inputs then of the parameters in state-dict order."""
    kw = {
        k: v.astype(dtype) if getattr(v, "dtype", None) == np.float64 else v for k, v in kw.items()
    }
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    same = arrays[0] is arrays[1]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays[: 1 if same else 3]]
    xs = [td.tensor(a, requires_grad=True) for a in arrays[: 1 if same else 3]]
    out_t, w_t = theirs(*(ts * 3 if same else ts), **tkw)
    out, w = ours(*(xs * 3 if same else xs), **kw)
    result = []
    for o, wt, leaves, params in (
        (out_t, w_t, ts, list(theirs.parameters())),
        (out, w, xs, list(ours.parameters())),
    ):
        grads = []
        if upstream is not None:
            o.backward(type(o)(upstream) if o is out else torch.tensor(upstream))
            grads = [t.grad.numpy() for t in leaves + params]
        result.append((o.detach().numpy(), None if wt is None else wt.detach().numpy(), grads))
    return result[1], result[0]


def test_parameter_names_and_shapes_are_pytorchs():
    ours, theirs = twin(np.float32)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    no_bias, theirs_nb = twin(np.float32, bias=False)
    assert list(no_bias.state_dict()) == list(theirs_nb.state_dict())


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_float32_outputs_and_weights_match_pytorch(batch_first, average, mask_kind):
    rng = np.random.default_rng(1)
    ours, theirs = twin(np.float32, batch_first=batch_first)
    kpm, am = masks(rng, mask_kind)
    (out, w, _), (want, want_w, _) = run(
        ours, theirs, inputs(rng, batch_first, np.float32), np.float32,
        key_padding_mask=kpm, attn_mask=am, average_attn_weights=average,
    )  # fmt: skip
    assert out.dtype == np.float32 and w.dtype == np.float32
    assert w.shape == ((N, L, S) if average else (N, H, L, S))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("self_attention", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_float64_gradients_of_inputs_and_parameters_match_pytorch(
    batch_first, self_attention, bias
):
    rng = np.random.default_rng(2)
    ours, theirs = twin(np.float64, batch_first=batch_first, bias=bias)
    kpm, am = masks(rng, "bool")
    arrays = inputs(rng, batch_first, np.float64, self_attention)
    if self_attention:
        kpm, am = np.zeros((N, L), bool), np.triu(np.ones((L, L), bool), 1)
        kpm[0, -2:] = True
    upstream = rng.standard_normal(arrays[0].shape)
    (out, w, grads), (want, want_w, want_grads) = run(
        ours, theirs, arrays, np.float64, upstream, key_padding_mask=kpm, attn_mask=am,
        average_attn_weights=False,
    )  # fmt: skip
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, want_w, rtol=1e-12, atol=1e-12)
    assert len(grads) == len(want_grads)
    for g, wg in zip(grads, want_grads):
        np.testing.assert_allclose(g, wg, rtol=1e-10, atol=1e-12)


def test_need_weights_false_unbatched_and_is_causal():
    rng = np.random.default_rng(3)
    ours, theirs = twin(np.float64, batch_first=True)
    x = rng.standard_normal((N, L, E))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
    want = theirs(*[torch.tensor(x)] * 3, attn_mask=causal, is_causal=True, need_weights=False)[0]
    t = td.tensor(x)
    out, w = ours(t, t, t, need_weights=False, is_causal=True)  # no mask needed here
    assert w is None
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-12)
    kpm = np.zeros((N, L), bool)
    kpm[:, -1] = True  # causal and padding together
    padding = torch.tensor(np.where(kpm, -np.inf, 0.0))  # PyTorch wants both masks float
    want = theirs(*[torch.tensor(x)] * 3, attn_mask=causal, key_padding_mask=padding)[0]
    np.testing.assert_allclose(
        ours(t, t, t, key_padding_mask=kpm, is_causal=True)[0].detach().numpy(), want.detach().numpy(),
        rtol=1e-12, atol=1e-12,
    )  # fmt: skip
    u = rng.standard_normal((L, E))  # unbatched (L, E)
    want_o, want_w = theirs(*[torch.tensor(u)] * 3)
    got_o, got_w = ours(*[td.tensor(u)] * 3)
    assert got_o.shape == (L, E) and got_w.shape == (L, L)
    np.testing.assert_allclose(
        got_o.detach().numpy(), want_o.detach().numpy(), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        got_w.detach().numpy(), want_w.detach().numpy(), rtol=1e-12, atol=1e-12
    )


def test_dropout_acts_in_training_only():
    ours, _ = twin(np.float64, dropout=0.5, batch_first=True)
    x = td.tensor(np.random.default_rng(4).standard_normal((N, L, E)))
    td.manual_seed(0)
    _, w = ours(x, x, x, average_attn_weights=False)
    assert (w.detach().numpy() == 0).mean() > 0.3  # about half of the weights dropped
    ours.eval()
    _, w = ours(x, x, x, average_attn_weights=False)
    assert (w.detach().numpy() > 0).all()
    np.testing.assert_allclose(w.detach().numpy().sum(-1), 1.0, rtol=1e-12)


def test_a_query_with_every_key_masked_gets_zero_weights_not_nan():
    ours, _ = twin(np.float64, batch_first=True)
    x = td.tensor(np.random.default_rng(5).standard_normal((N, L, E)))
    kpm = np.zeros((N, L), bool)
    kpm[1] = True  # every key of sample 1 is padding
    out, w = ours(x, x, x, key_padding_mask=kpm)
    assert not np.isnan(out.detach().numpy()).any()
    assert not w.detach().numpy()[1].any() and np.allclose(w.detach().numpy()[0].sum(-1), 1.0)


def test_wrong_shapes_are_named():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"):
        nn.MultiheadAttention(10, 3)
    m = nn.MultiheadAttention(E, H, batch_first=True)
    x = td.randn(N, L, E)
    with pytest.raises(ShapeError, match=r"MultiheadAttention: query must be .*got \(3, 5, 6\)"):
        m(td.randn(N, L, 6), x, x)
    with pytest.raises(
        ShapeError, match=r"MultiheadAttention: key must have .*got key \(3, 5, 7\)"
    ):
        m(x, td.randn(N, L, 7), x)
    with pytest.raises(
        ShapeError, match=r"key_padding_mask must have shape \(N, S\) = \(3, 5\), got \(3, 4\)"
    ):
        m(x, x, x, key_padding_mask=np.zeros((N, 4), bool))
    with pytest.raises(
        ShapeError, match=r"attn_mask must have shape \(L, S\) = \(5, 5\).*got \(4, 5\)"
    ):
        m(x, x, x, attn_mask=np.zeros((4, L), bool))
    with pytest.raises(ShapeError, match="differ in batch size"):
        m(x, td.randn(2, L, E), td.randn(2, L, E))
