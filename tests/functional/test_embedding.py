"""embedding and Embedding against torch.nn.functional.embedding / torch.nn.Embedding: forward,
the scatter-add gradient, padding_idx, state dicts, errors."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl.functional.embedding import _scatter_rows

torch = pytest.importorskip("torch", reason="embedding is compared with PyTorch's")


def _weight(rows=7, dim=4, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(dtype)


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_gradient_match_torch_for_a_batch_of_sequences(backend, padding_idx, dtype):
    rng = np.random.default_rng(1)
    w = _weight(dtype=dtype)
    index = rng.integers(0, 7, (4, 9))  # (B, T): repeated ids, the padding id among them
    index[0, :3] = 2
    index[1, :2] = 6
    weight = backend.tensor(w, requires_grad=True)
    out = F.embedding(backend.tensor(index), weight, padding_idx=padding_idx)
    tw = torch.tensor(w, requires_grad=True)
    ref = torch.nn.functional.embedding(torch.tensor(index), tw, padding_idx=padding_idx)
    assert out.shape == (4, 9, 4) and out.dtype == dtype
    np.testing.assert_array_equal(backend.numpy(out), ref.detach().numpy())
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(backend.tensor(g))
    ref.backward(torch.tensor(g))
    assert weight.grad.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(backend.numpy(weight.grad), tw.grad.numpy(), rtol=tol, atol=tol)
    if padding_idx is not None:
        assert not backend.numpy(weight.grad)[padding_idx].any()
        assert backend.numpy(weight.grad).any()


def test_index_of_any_shape_and_plain_arrays_or_lists():
    w = td.tensor(_weight())
    np.testing.assert_array_equal(F.embedding(td.tensor(3), w).data, w.data[3])
    np.testing.assert_array_equal(F.embedding([[1, 2]], w).data, w.data[[[1, 2]]])
    idx = np.arange(12, dtype=np.int32).reshape(2, 3, 2) % 7
    np.testing.assert_array_equal(F.embedding(idx, w).data, w.data[idx])


@pytest.mark.parametrize("padding_idx", [None, 3])
def test_the_gradient_is_differentiable_again(padding_idx):
    index = td.tensor(np.array([[0, 3, 3], [5, 0, 1]]))
    w = td.tensor(_weight(rows=6, dim=2), requires_grad=True)
    if padding_idx is None:
        # NOTE: the padding row's zero gradient is a definition, so gradcheck disagrees there;
        # the gradient function itself (padding row zero) has the right derivatives.
        td.gradcheck(lambda w: F.embedding(index, w) ** 2, [w])
    td.gradgradcheck(lambda w: F.embedding(index, w, padding_idx) ** 2, [w])

    def weight_grad(g):  # linear in the upstream gradient, padding positions dropped
        with td.enable_grad():  # gradcheck's central differences run under no_grad
            out = F.embedding(index, w, padding_idx)
            return td.grad(out, [w], g, create_graph=True)[0]

    g = td.tensor(np.random.default_rng(3).standard_normal((2, 3, 2)), requires_grad=True)
    td.gradcheck(weight_grad, [g])


@pytest.mark.parametrize("rows", [1, 65, 1000])
def test_the_scatter_add_equals_np_add_at(rows):
    rng = np.random.default_rng(rows)
    index = rng.integers(0, rows, 300)
    grad = rng.standard_normal((300, 5))
    want = np.zeros((rows, 5))
    np.add.at(want, index, grad)
    np.testing.assert_allclose(_scatter_rows(grad, index, rows, None), want, rtol=1e-13)
    want[index[0]] = 0
    np.testing.assert_allclose(_scatter_rows(grad, index, rows, index[0]), want, rtol=1e-13)
    assert not _scatter_rows(grad[:0], index[:0], rows, None).any()


def test_embedding_layer_loads_torchs_state_dict_and_matches_it():
    torch.manual_seed(0)
    theirs = torch.nn.Embedding(10, 3, padding_idx=1)
    ours = nn.Embedding(10, 3, padding_idx=1)
    ours.load_state_dict({k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    index = np.array([[1, 4, 9], [0, 1, 4]])
    out, ref = ours(td.tensor(index)), theirs(torch.tensor(index))
    np.testing.assert_array_equal(out.data, ref.detach().numpy())
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_array_equal(ours.weight.grad.data, theirs.weight.grad.numpy())
    assert repr(ours) == repr(theirs)


def test_embedding_layer_init_is_standard_normal_with_a_zero_padding_row():
    layer = nn.Embedding(1000, 64, padding_idx=-2)
    w = layer.weight.data
    assert layer.padding_idx == 998 and w.dtype == np.float32
    assert not w[998].any()
    rest = np.delete(w, 998, axis=0)
    assert abs(rest.mean()) < 0.01 and abs(rest.std() - 1) < 0.01
    assert nn.Embedding(5, 2).weight.data.all()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: F.embedding([0, 7], w), IndexError,
         r"^embedding: input holds index 7, out of range for 7 embeddings \(weight of shape "
         r"\(7, 4\)\)"),
        (lambda w: F.embedding([-1], w), IndexError, "^embedding: input holds index -1"),
        (lambda w: F.embedding(td.tensor([1.0]), w), td.DTypeError,
         "^embedding: input must hold integer indices, got float32"),
        (lambda w: F.embedding([1], w[0]), td.ShapeError,
         r"^embedding: weight must be 2-D .* got shape \(4,\)"),
        (lambda w: F.embedding([1], w, padding_idx=7), IndexError,
         "^embedding: padding_idx 7 is out of range for 7 embeddings"),
        (lambda w: nn.Embedding(7, 4, padding_idx=-8), ValueError,
         "^Embedding: padding_idx -8 is out of range for 7 embeddings"),
    ],
)  # fmt: skip
def test_errors_name_the_op_the_argument_and_the_bad_value(call, error, message):
    with pytest.raises(error, match=message):
        call(td.tensor(_weight()))
