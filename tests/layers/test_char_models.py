"""The character models of the zoo: shapes, the MLP's arithmetic, causality, bad inputs."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl.errors import ShapeError

V = 27


def _ids(*shape, seed=0):
    return td.Tensor.from_array(np.random.default_rng(seed).integers(0, V, shape))


@pytest.mark.parametrize("kind", ["mlp", "lstm", "transformer"])
def test_shapes_and_gradients(kind):
    td.manual_seed(0)
    model = nn.CHAR_MODELS[kind](V)
    x = _ids(5, 3) if kind == "mlp" else _ids(5, 7)
    out = model(x)
    assert out.shape == ((5, V) if kind == "mlp" else (5, 7, V)) and out.dtype == np.float32
    F.cross_entropy(
        out.reshape(-1, V), td.Tensor.from_array(np.zeros(out.data.size // V, int))
    ).backward()
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all() for p in model.parameters())


def test_mlp_is_embedding_concat_tanh_linear():
    td.manual_seed(1)
    m = nn.CharMLP(V, block_size=4, n_embd=5, n_hidden=8)
    x = np.random.default_rng(2).integers(0, V, (6, 4))
    e = m.embed.weight.data[x].reshape(6, 20)
    h = np.tanh(e @ m.hidden.weight.data.T + m.hidden.bias.data)
    want = h @ m.out.weight.data.T + m.out.bias.data
    np.testing.assert_allclose(m(td.Tensor.from_array(x)).data, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_sequence_models_are_causal(kind):
    td.manual_seed(0)
    sizes = {"n_embd": 16, "n_head": 2, "n_layer": 2, "block_size": 8}
    model = (nn.CharLSTM(V, 8, 16) if kind == "lstm" else nn.CharTransformer(V, **sizes)).eval()
    a = _ids(2, 8, seed=3).numpy()
    b = a.copy()
    b[:, 5:] = (b[:, 5:] + 1) % V  # change the future only
    ya, yb = (model(td.Tensor.from_array(v)).data for v in (a, b))
    np.testing.assert_allclose(ya[:, :5], yb[:, :5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(ya[:, 5:], yb[:, 5:])


def test_bad_inputs_name_the_model_and_shape():
    with pytest.raises(ShapeError, match=r"CharMLP: context must be 3 characters wide.*\(2, 4\)"):
        nn.CharMLP(V)(_ids(2, 4))
    with pytest.raises(ShapeError, match=r"CharTransformer: input must be \(N, T\).*\(6,\)"):
        nn.CharTransformer(V)(_ids(6))
    with pytest.raises(ShapeError, match="exceeds max_len 4"):
        nn.CharTransformer(V, block_size=4, n_embd=8, n_head=2)(_ids(1, 5))
