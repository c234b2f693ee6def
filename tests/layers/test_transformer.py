"""TransformerEncoderLayer against PyTorch 2.13's (state dict loaded one to one), the causal
decoder block and the positional encodings."""

import math

import numpy as np
import pytest

import tinydl as td
from tinydl import layers as nn
from tinydl.errors import ShapeError

torch = pytest.importorskip("torch", reason="the transformer tests compare with PyTorch")

D, HEADS, FF, N, T = 16, 4, 24, 3, 5


def twin(dtype, **kw):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(D, HEADS, FF, **kw)
    theirs.to(getattr(torch, np.dtype(dtype).name))
    ours = nn.TransformerEncoderLayer(D, HEADS, FF, **kw)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.to(dtype)
    return ours, theirs


def padding():
    kpm = np.zeros((N, T), bool)
    kpm[1, -2:] = kpm[2, -1] = True
    return kpm


CONFIGS = [
    (norm_first, activation, batch_first)
    for norm_first in (False, True)
    for activation in ("relu", "gelu")
    for batch_first in (False, True)
]


def test_submodule_and_parameter_names_are_pytorchs():
    ours, theirs = twin(np.float32)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]


@pytest.mark.parametrize("norm_first,activation,batch_first", CONFIGS)
def test_float32_eval_output_matches_pytorch(norm_first, activation, batch_first):
    ours, theirs = twin(np.float32, activation=activation, batch_first=batch_first,
                        norm_first=norm_first)  # fmt: skip
    ours.eval(), theirs.eval()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, T, D) if batch_first else (T, N, D)).astype(np.float32)
    causal = np.triu(np.ones((T, T), bool), 1)
    for kw in ({}, {"src_key_padding_mask": padding(), "src_mask": causal}):
        # NOTE: an input that requires grad keeps PyTorch off its fused inference path
        want = theirs(torch.tensor(x, requires_grad=True),
                      **{k: torch.tensor(v) for k, v in kw.items()}).detach().numpy()  # fmt: skip
        with td.no_grad():
            out = ours(td.tensor(x), **kw)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first,activation,batch_first", CONFIGS)
def test_float64_gradients_match_pytorch(norm_first, activation, batch_first):
    ours, theirs = twin(np.float64, activation=activation, batch_first=batch_first,
                        norm_first=norm_first, dropout=0.0)  # fmt: skip
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, T, D) if batch_first else (T, N, D))
    upstream = rng.standard_normal(x.shape)
    kpm = padding()
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt, src_key_padding_mask=torch.tensor(kpm))
    out_t.backward(torch.tensor(upstream))
    xd = td.tensor(x, requires_grad=True)
    out = ours(xd, src_key_padding_mask=kpm)
    out.backward(td.tensor(upstream))
    np.testing.assert_allclose(out.detach().numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(),
                                   rtol=1e-9, atol=1e-11, err_msg=name)  # fmt: skip


def test_is_causal_without_a_mask_applies_the_causal_mask():
    ours, theirs = twin(np.float64, batch_first=True, dropout=0.0)
    x = np.random.default_rng(3).standard_normal((N, T, D))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    want = theirs(torch.tensor(x, requires_grad=True), src_mask=mask, is_causal=True)
    with td.no_grad():
        out = ours(td.tensor(x), is_causal=True)
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_dropout_in_training_changes_the_output_and_eval_does_not():
    ours, _ = twin(np.float64, batch_first=True, dropout=0.5)
    x = td.tensor(np.random.default_rng(4).standard_normal((N, T, D)))
    with td.no_grad():
        ours.eval()
        a, b = ours(x).numpy(), ours(x).numpy()
        ours.train()
        c = ours(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be 'relu', 'gelu' or a callable"):
        nn.TransformerEncoderLayer(D, HEADS, activation="swish")


# ----------------------------------------------------------------------------- decoder block


def block_reference(block, x):
    """The block written out with PyTorch's functional ops on its own parameters: pre-norm
    causal self-attention and a GELU MLP, each added to the residual stream."""
    p = {k: torch.tensor(v.numpy()) for k, v in block.state_dict().items()}
    TF = torch.nn.functional
    h = TF.layer_norm(x, (D,), p["ln1.weight"], p["ln1.bias"])
    q, k, v = TF.linear(h, p["attn.in_proj_weight"], p["attn.in_proj_bias"]).chunk(3, -1)
    heads = [t.reshape(N, T, HEADS, D // HEADS).transpose(1, 2) for t in (q, k, v)]
    a = TF.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(N, T, D)
    x = x + TF.linear(a, p["attn.out_proj.weight"], p["attn.out_proj.bias"])
    h = TF.layer_norm(x, (D,), p["ln2.weight"], p["ln2.bias"])
    return x + TF.linear(
        TF.gelu(TF.linear(h, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"]
    )


def test_causal_block_matches_its_pytorch_formula_and_hides_the_future():
    td.manual_seed(0)
    block = nn.CausalSelfAttentionBlock(D, HEADS).double()
    assert block.fc1.weight.shape == (4 * D, D)
    x = np.random.default_rng(5).standard_normal((N, T, D))
    with td.no_grad():
        out = block(td.tensor(x)).numpy()
    np.testing.assert_allclose(
        out, block_reference(block, torch.tensor(x)).numpy(), rtol=1e-10, atol=1e-12
    )
    changed = x.copy()
    changed[:, -1] += 1.0  # the last position must not affect the earlier ones
    with td.no_grad():
        out2 = block(td.tensor(changed)).numpy()
    np.testing.assert_array_equal(out2[:, :-1], out[:, :-1])
    assert not np.allclose(out2[:, -1], out[:, -1])
    with pytest.raises(ShapeError, match=r"CausalSelfAttentionBlock: x must be \(N, T, d_model\)"):
        block(td.tensor(x[0]))


# ----------------------------------------------------------------------------- positions


def test_sinusoidal_encoding_values_layouts_and_dtype():
    pe = nn.SinusoidalPositionalEncoding(6, max_len=10)
    assert "pe" not in pe.state_dict()  # computed, not learned
    table = pe.pe.numpy()
    for pos in (0, 3, 9):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert math.isclose(table[pos, 2 * i], math.sin(angle), rel_tol=1e-6, abs_tol=1e-7)
            assert math.isclose(table[pos, 2 * i + 1], math.cos(angle), rel_tol=1e-6, abs_tol=1e-7)
    x = np.random.default_rng(6).standard_normal((2, 4, 6)).astype(np.float32)
    out = pe(td.tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), x + table[:4], rtol=1e-6)
    seq_first = nn.SinusoidalPositionalEncoding(6, max_len=10, batch_first=False)
    out = seq_first(td.tensor(x.transpose(1, 0, 2).astype(np.float64)))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), x.transpose(1, 0, 2) + table[:4, None], rtol=1e-6)
    odd = nn.SinusoidalPositionalEncoding(5, max_len=3).pe.numpy()
    assert odd.shape == (3, 5) and odd[1, 4] == np.float32(math.sin(1 / 10000**0.8))
    with pytest.raises(ShapeError, match="sequence length 11 exceeds max_len 10"):
        pe(td.zeros(1, 11, 6))
    with pytest.raises(ShapeError, match=r"input must be \(N, T, C\) with C = 6"):
        pe(td.zeros(1, 4, 5))


def test_learned_positional_embedding_adds_rows_and_gets_gradients():
    emb = nn.LearnedPositionalEmbedding(8, 4)
    assert list(emb.state_dict()) == ["weight"] and emb.weight.shape == (8, 4)
    x = td.randn(2, 3, 4, requires_grad=True)
    out = emb(x)
    np.testing.assert_allclose(
        out.detach().numpy(), x.detach().numpy() + emb.weight.detach().numpy()[:3]
    )
    out.sum().backward()
    grad = emb.weight.grad.numpy()
    np.testing.assert_array_equal(grad[:3], 2.0)  # each of the first 3 rows is used by 2 samples
    np.testing.assert_array_equal(grad[3:], 0.0)
    seq_first = nn.LearnedPositionalEmbedding(8, 4, batch_first=False)
    y = td.randn(3, 2, 4)
    np.testing.assert_allclose(seq_first(y).detach().numpy(),
                               y.numpy() + seq_first.weight.detach().numpy()[:3, None])  # fmt: skip
    with pytest.raises(ShapeError, match="sequence length 9 exceeds max_len 8"):
        emb(td.zeros(1, 9, 4))
