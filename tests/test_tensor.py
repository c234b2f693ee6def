"""Tensor creation, dtypes, conversions and printing."""

import numpy as np
import pytest

import tinydl as td


def test_python_numbers_default_to_float32_and_int64():
    assert td.tensor(1.0).dtype == np.float32
    assert td.tensor([1.0, 2]).dtype == np.float32
    assert td.tensor(3).dtype == np.int64
    assert td.tensor([True, False]).dtype == np.bool_


def test_numpy_arrays_keep_their_dtype_unless_told():
    a = np.arange(3, dtype=np.float64)
    assert td.tensor(a).dtype == np.float64
    assert td.tensor(a, dtype="float32").dtype == np.float32
    assert td.tensor(a, dtype=td.float16).dtype == np.float16
    assert td.tensor(a, dtype=np.int32).dtype == np.int32


def test_bad_dtype_is_named():
    with pytest.raises(td.DTypeError, match="'floaty'"):
        td.tensor(1.0, dtype="floaty")


def test_tensor_copies_but_from_numpy_and_as_tensor_share():
    a = np.zeros(3, dtype=np.float32)
    t, f, s = td.tensor(a), td.from_numpy(a), td.as_tensor(a)
    a[0] = 5
    assert t.data[0] == 0 and f.data[0] == 5 and s.data[0] == 5


@pytest.mark.parametrize("make,shape,dtype", [
    (lambda: td.zeros(2, 3), (2, 3), np.float32),
    (lambda: td.ones((2, 3), dtype="float64"), (2, 3), np.float64),
    (lambda: td.full((2,), 7), (2,), np.int64),
    (lambda: td.full((2,), 7.0), (2,), np.float32),
    (lambda: td.empty(4), (4,), np.float32),
    (lambda: td.arange(5), (5,), np.int64),
    (lambda: td.arange(0, 1, 0.25), (4,), np.float32),
    (lambda: td.linspace(0, 1, 5), (5,), np.float32),
    (lambda: td.eye(3), (3, 3), np.float32),
    (lambda: td.rand(2, 2), (2, 2), np.float32),
    (lambda: td.randn(3, dtype=td.float64), (3,), np.float64),
    (lambda: td.randint(0, 10, (4,)), (4,), np.int64),
    (lambda: td.zeros_like(td.ones(2, 2, dtype="float64")), (2, 2), np.float64),
    (lambda: td.ones_like(td.ones(3)), (3,), np.float32),
    (lambda: td.full_like(td.ones(3), 2.0), (3,), np.float32),
    (lambda: td.randn_like(td.ones(1, 3)), (1, 3), np.float32),
    (lambda: td.rand_like(td.ones(2)), (2,), np.float32),
    (lambda: td.randint_like(td.ones(2), 5), (2,), np.float32),
    (lambda: td.empty_like(td.ones(2)), (2,), np.float32),
])
def test_creation_functions(make, shape, dtype):
    t = make()
    assert t.shape == shape and t.dtype == dtype and not t.requires_grad


def test_values_of_creation_functions():
    assert td.arange(1, 7, 2).tolist() == [1, 3, 5]
    assert td.linspace(0, 1, 3).tolist() == [0.0, 0.5, 1.0]
    assert td.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    r = td.randint(3, 5, (100,)).numpy()
    assert r.min() >= 3 and r.max() <= 4
    u = td.rand(1000).numpy()
    assert 0 <= u.min() and u.max() < 1


def test_manual_seed_makes_random_repeatable():
    td.manual_seed(42)
    a = td.randn(5).numpy()
    td.manual_seed(42)
    assert np.array_equal(a, td.randn(5).numpy())


def test_invalid_sizes_name_the_value():
    with pytest.raises(ValueError, match="-1"):
        td.zeros(2, -1)
    with pytest.raises(ValueError, match="high"):
        td.randint(5, 5, (2,))


def test_properties():
    t = td.randn(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.numel() == 24
    assert t.device == "cpu" and str(t.device) == "cpu"
    assert t.T.shape == (4, 3, 2) and t.mT.shape == (2, 4, 3)
    assert len(t) == 2 and [s.shape for s in td.ones(2, 3)] == [(3,), (3,)]


def test_item_and_conversions():
    assert td.tensor([[2.5]]).item() == 2.5
    assert float(td.tensor(1.5)) == 1.5 and int(td.tensor(3)) == 3
    with pytest.raises(td.ShapeError, match=r"one-element.*\(2,\)"):
        td.ones(2).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(td.ones(2))
    assert td.tensor([1.5, 2.0]).long().tolist() == [1, 2]
    assert td.tensor([1, 2]).double().dtype == np.float64
    assert td.ones(2).to("float64").dtype == np.float64
    assert td.ones(2).to(td.float16).dtype == np.float16


def test_numpy_refuses_graph_tensors():
    x = td.ones(2, requires_grad=True)
    with pytest.raises(td.BackwardError, match="detach"):
        x.numpy()
    assert x.detach().numpy().tolist() == [1.0, 1.0]


def test_cast_is_differentiable():
    x = td.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    y = x.float() * 3
    y.sum().backward()
    assert x.grad.dtype == np.float64 and x.grad.tolist() == [3.0, 3.0]


def test_comparisons_give_bool_tensors():
    x = td.tensor([1.0, 2.0, 3.0])
    assert (x > 1.5).tolist() == [False, True, True]
    assert (x == td.tensor([1.0, 0.0, 3.0])).tolist() == [True, False, True]
    assert {x: 1}[x] == 1  # still hashable by identity


def test_repr_looks_like_pytorch():
    assert repr(td.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(td.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(td.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert repr(td.tensor([1.5], dtype="float64")) == "tensor([1.5], dtype=float64)"
    y = td.tensor([1.0], requires_grad=True) * 2
    assert repr(y) == "tensor([2.], grad_fn=<MulBackward>)"
    assert repr(td.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"


def test_numpy_operands_defer_to_tensor():
    out = np.ones(2, dtype=np.float32) + td.ones(2, requires_grad=True)
    assert isinstance(out, td.Tensor) and out.requires_grad


def test_parameter_is_a_leaf_that_requires_grad():
    p = td.Parameter(td.zeros(2))
    assert p.requires_grad and p.is_leaf and repr(p).startswith("Parameter containing:\n")


def test_unknown_device_is_explained():
    with pytest.raises(td.DeviceError, match="tpu"):
        td.zeros(2, device="tpu")
    if not td.cuda.is_available():  # with a GPU, "cuda" works (tests/gpu)
        with pytest.raises(td.DeviceError, match="CuPy"):
            td.zeros(2, device="cuda")
