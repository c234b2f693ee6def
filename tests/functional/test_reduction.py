import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, compare_with_torch, torch
from tinydl.testing import shapes, tensors


@st.composite
def dims_for(draw, ndim, allow_tuple=True):
    """A ``dim`` argument for a tensor of ``ndim`` dims: None, an int or a tuple (negatives too)."""
    if ndim == 0:
        return draw(st.sampled_from([None, 0, -1]))
    one = st.integers(-ndim, ndim - 1)
    options = [st.none(), one]
    if allow_tuple:
        subset = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)
        options.append(subset.map(lambda ds: tuple(d - ndim if d % 2 else d for d in ds)))
    return draw(st.one_of(*options))


@st.composite
def distinct(draw, shape=None):
    """float64 tensors whose absolute values are distinct and >= 0.3 (no ties, no kinks)."""
    shape = draw(shapes(max_side=4)) if shape is None else shape
    n = math.prod(shape)
    order = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    jitter = np.array(draw(st.lists(st.floats(0, 0.05), min_size=n, max_size=n)))
    signs = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n)))
    data = ((order + 1) * 0.37 + jitter) * signs
    return td.tensor(data.reshape(shape), dtype=td.float64, requires_grad=True)


def axis(dim, ndim):
    """The NumPy ``axis`` for a tinydl ``dim`` (NumPy refuses axis 0 on 0-d arrays)."""
    return None if dim is None or ndim == 0 else dim


def torch_dim(dim, ndim):
    return tuple(range(ndim)) if dim is None or ndim == 0 else dim


def count(shape, dim):
    ax = axis(dim, len(shape))
    if ax is None:
        return math.prod(shape)
    return math.prod(shape[d] for d in ((ax,) if isinstance(ax, int) else ax))


@pytest.mark.parametrize("name", ["sum", "mean"])
@given(data=st.data(), keepdim=st.booleans())
def test_sum_mean(backend, name, data, keepdim):
    x = data.draw(tensors(noncontiguous=None))
    dim = data.draw(dims_for(x.ndim))
    ref = getattr(np, name)
    check_op(
        lambda t: getattr(F, name)(t, dim, keepdim),
        [x],
        lambda a: ref(a, axis=axis(dim, a.ndim), keepdims=keepdim),
        lambda t: getattr(torch, name)(t, torch_dim(dim, t.ndim), keepdim),
        second_order=True,
        backend=backend,
    )


def test_sum_mean_dtypes(backend):
    i = backend.tensor([[1, 2], [3, 4]])
    assert F.sum(i).dtype == np.int64 and F.sum(i).item() == 10
    assert F.sum(backend.tensor([True, True, False])).item() == 2
    assert F.mean(i, 0).dtype == np.float32
    assert F.mean(i, 0).tolist() == [2.0, 3.0]
    assert F.sum(i, dtype=td.float64).dtype == np.float64
    ones = td.ones(2, 3, device=backend.name)
    assert F.sum(ones, dim=()).shape == ()  # dim=() reduces everything, as PyTorch


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), keepdim=st.booleans())
def test_max_min_all(backend, name, data, keepdim):
    x = data.draw(distinct())
    ref = getattr(np, name)
    check_op(
        lambda t: getattr(F, name)(t, keepdim=keepdim),
        [x],
        lambda a: ref(a, keepdims=keepdim),
        (lambda t: getattr(torch, name)(t)) if not keepdim else None,
        second_order=True,
        backend=backend,
    )


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), keepdim=st.booleans())
def test_max_min_dim(backend, name, data, keepdim):
    x = data.draw(distinct())
    dim = data.draw(dims_for(x.ndim, allow_tuple=False).filter(lambda d: d is not None))
    ref = getattr(np, name)
    check_op(
        lambda t: getattr(F, name)(t, dim, keepdim).values,
        [x],
        lambda a: ref(a, axis=axis(dim, a.ndim), keepdims=keepdim and a.ndim > 0),
        lambda t: getattr(torch, name)(t, dim, keepdim).values,
        second_order=True,
        backend=backend,
    )
    arg = getattr(np, "arg" + name)
    _, idx = getattr(F, name)(backend.put(x), dim, keepdim)
    expected = arg(x.data, axis=axis(dim, x.ndim), keepdims=keepdim and x.ndim > 0)
    np.testing.assert_array_equal(backend.numpy(idx), expected)
    assert idx.dtype == np.int64 and not idx.requires_grad


def test_max_ties_split_evenly_without_dim_and_go_to_index_with_dim(backend):
    x = backend.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    F.max(x).backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [[0, 0.5, 0.5], [0, 0, 0]])
    x.grad = None
    values, indices = F.max(x, 1)
    np.testing.assert_array_equal(backend.numpy(indices), [1, 0])
    values.sum().backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [[0, 1, 0], [1, 0, 0]])
    x.grad = None
    F.min(x, 0).values.sum().backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [[1, 0, 0], [0, 1, 1]])
    if torch is not None:
        for fn in (
            lambda t: t.max(),
            lambda t: t.min(),
            lambda t: t.max(1).values,
            lambda t: t.min(0).values,
        ):
            compare_with_torch(
                fn,
                fn,
                [
                    backend.tensor(
                        [[1.0, 3.0, 3.0], [3.0, 1.0, 1.0]], dtype=td.float64, requires_grad=True
                    )
                ],
            )


def test_max_with_tensor_is_maximum_and_zero_dim(backend):
    a, b = backend.tensor([1.0, 5.0]), backend.tensor([3.0, 2.0])
    if hasattr(F, "maximum"):
        assert F.max(a, b).tolist() == [3.0, 5.0]
    v, i = F.max(backend.tensor(4.0), 0)
    assert v.item() == 4.0 and i.item() == 0 and v.shape == ()


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@given(data=st.data(), keepdim=st.booleans())
def test_argmax_argmin(backend, name, data, keepdim):
    x = data.draw(tensors(min_value=-2, max_value=2))
    dim = data.draw(dims_for(x.ndim, allow_tuple=False))
    out = getattr(F, name)(backend.put(x), dim, keepdim)
    a = x.data
    if dim is None:
        expected = getattr(np, name)(a).reshape((1,) * a.ndim if keepdim else ())
    else:
        expected = getattr(np, name)(a, axis=axis(dim, a.ndim), keepdims=keepdim and a.ndim > 0)
    np.testing.assert_array_equal(backend.numpy(out), expected)
    assert out.dtype == np.int64 and not out.requires_grad
    if torch is not None:
        t = getattr(torch, name)(torch.tensor(a), dim, keepdim)
        np.testing.assert_array_equal(backend.numpy(out), t.numpy())


@pytest.mark.parametrize("name", ["var", "std"])
@given(data=st.data(), keepdim=st.booleans(), correction=st.sampled_from([0, 1, 2]))
def test_var_std(backend, name, data, keepdim, correction):
    x = data.draw(distinct())
    dim = data.draw(dims_for(x.ndim))
    assume(count(x.shape, dim) > max(correction, 1))
    ref = getattr(np, name)
    check_op(
        lambda t: getattr(F, name)(t, dim, correction=correction, keepdim=keepdim),
        [x],
        lambda a: ref(a, axis=axis(dim, a.ndim), ddof=correction, keepdims=keepdim),
        lambda t: getattr(torch, name)(
            t, torch_dim(dim, t.ndim), correction=correction, keepdim=keepdim
        ),
        second_order=True,
        backend=backend,
    )


@given(shape=shapes(min_dims=1, min_side=2, max_side=4))
def test_var_of_constant_slices(backend, shape):
    c = td.tensor(np.full(shape, 2.5), dtype=td.float64, requires_grad=True)
    check_op(
        lambda t: F.var(t, -1),
        [c],
        lambda a: np.var(a, axis=-1, ddof=1),
        lambda t: torch.var(t, -1),
        second_order=True,
        backend=backend,
    )


def test_std_of_constant_has_zero_gradient_and_small_counts_give_nan_or_inf(backend):
    x = td.ones(3, 4, requires_grad=True, device=backend.name)
    s = F.std(x, 1)
    s.sum().backward()
    np.testing.assert_array_equal(backend.numpy(s), np.zeros(3))
    np.testing.assert_array_equal(backend.numpy(x.grad), np.zeros((3, 4)))
    assert np.isnan(F.var(td.ones(1, device=backend.name)).item())  # 0 / 0, as PyTorch
    assert F.var(backend.tensor([1.0, 2.0]), correction=2).item() == np.inf


@given(data=st.data(), keepdim=st.booleans())
def test_logsumexp(backend, data, keepdim):
    x = data.draw(tensors(noncontiguous=None))
    dim = data.draw(dims_for(x.ndim))

    def ref(a):
        return np.log(np.sum(np.exp(a), axis=axis(dim, a.ndim), keepdims=keepdim))

    check_op(
        lambda t: F.logsumexp(t, dim, keepdim),
        [x],
        ref,
        lambda t: torch.logsumexp(t, torch_dim(dim, t.ndim), keepdim),
        second_order=True,
        backend=backend,
    )


@pytest.mark.parametrize("dtype", [td.float32, td.float64])
def test_logsumexp_is_stable_for_huge_inputs(backend, dtype):
    a = np.array([[1e4, 1e4 + 1.0, -1e4], [-1e30, -1e30, -np.inf]])
    x = backend.tensor(a, dtype=dtype, requires_grad=True)
    y = F.logsumexp(x, 1)
    assert y.dtype == dtype
    expected = [1e4 + 1.0 + np.log1p(np.exp(-1.0)), -1e30 + np.log(2.0)]
    np.testing.assert_allclose(backend.numpy(y), expected, rtol=1e-6)
    y.sum().backward()
    soft = np.exp(a - a.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)  # row 1: [0.5, 0.5, 0], though -1e30 + log 2 == -1e30
    np.testing.assert_allclose(backend.numpy(x.grad), soft, rtol=1e-5, atol=1e-7)
    assert x.grad.dtype == dtype
    assert F.logsumexp(backend.tensor([np.inf, 1.0]), 0).item() == np.inf
    assert F.logsumexp(backend.tensor([-np.inf, -np.inf]), 0).item() == -np.inf


@given(data=st.data(), keepdim=st.booleans())
def test_prod(backend, data, keepdim):
    # NOTE: values near 0 (1e-60 next to 1) make the double backward of prod / x ill-conditioned
    # (as in PyTorch); exact zeros are tested below.
    x = data.draw(tensors(shapes(max_side=3), min_value=-2, max_value=2, avoid=(0,), min_gap=0.05))
    dim = data.draw(dims_for(x.ndim))
    check_op(
        lambda t: F.prod(t, dim, keepdim),
        [x],
        lambda a: np.prod(a, axis=axis(dim, a.ndim), keepdims=keepdim),
        (lambda t: torch.prod(t, dim, keepdim))
        if isinstance(dim, int)
        else (lambda t: torch.prod(t))
        if dim is None and not keepdim
        else None,
        second_order=True,
        backend=backend,
    )


@given(data=st.data(), keepdim=st.booleans())
def test_prod_with_zeros(backend, data, keepdim):
    x = data.draw(
        tensors(shapes(min_dims=1, max_side=3), min_value=-2, max_value=2, avoid=(0,), min_gap=0.05)
    )
    flat = x.data.reshape(-1)
    zeros = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=3))
    flat[zeros] = 0.0
    dim = data.draw(dims_for(x.ndim))
    check_op(
        lambda t: F.prod(t, dim, keepdim),
        [x],
        lambda a: np.prod(a, axis=axis(dim, a.ndim), keepdims=keepdim),
        (lambda t: torch.prod(t, dim, keepdim)) if isinstance(dim, int) else None,
        second_order=True,
        backend=backend,
    )


def test_prod_gradient_with_one_and_two_zeros(backend):
    x = backend.tensor([[2.0, 0.0, 3.0], [0.0, 4.0, 0.0]], dtype=td.float64, requires_grad=True)
    F.prod(x, 1).sum().backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [[0, 6, 0], [0, 0, 0]])


NORMS = [2, "fro", 1, float("inf"), float("-inf"), 3, 0.5]


@pytest.mark.parametrize("p", NORMS, ids=str)
@given(data=st.data(), keepdim=st.booleans())
def test_norm(backend, p, data, keepdim):
    x = data.draw(distinct())
    dim = data.draw(dims_for(x.ndim))
    q = 2 if p == "fro" else p

    def ref(a):
        ax, m = axis(dim, a.ndim), np.abs(a)
        if q == float("inf"):
            return np.max(m, axis=ax, keepdims=keepdim)
        if q == float("-inf"):
            return np.min(m, axis=ax, keepdims=keepdim)
        return np.sum(m**q, axis=ax, keepdims=keepdim) ** (1 / q)

    check_op(
        lambda t: F.norm(t, p, dim, keepdim),
        [x],
        ref,
        lambda t: torch.linalg.vector_norm(t, q, torch_dim(dim, t.ndim), keepdim),
        second_order=True,
        backend=backend,
    )


def test_norm_of_zeros_has_zero_gradient_and_p0_counts(backend):
    x = td.zeros(3, requires_grad=True, device=backend.name)
    F.norm(x).backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [0, 0, 0])
    assert F.norm(backend.tensor([0.0, 2.0, -1.0]), 0).item() == 2.0
    x = backend.tensor([3.0, -3.0, 1.0], requires_grad=True)  # inf norm: ties share, as PyTorch
    F.norm(x, float("inf")).backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [0.5, -0.5, 0])


REDUCTIONS = [
    lambda t: F.sum(t, 1),
    lambda t: F.mean(t),
    lambda t: F.max(t),
    lambda t: F.min(t, 0).values,
    lambda t: F.var(t, 1),
    lambda t: F.std(t),
    lambda t: F.logsumexp(t, 0),
    lambda t: F.prod(t, 1),
    lambda t: F.norm(t),
    lambda t: F.norm(t, 1, 0),
]


@pytest.mark.parametrize("fn", REDUCTIONS)
def test_float32_stays_float32(backend, fn):
    x = backend.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]], requires_grad=True)
    y = fn(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_tensor_methods_forward_to_reductions(backend):
    x = backend.tensor([[1.0, 5.0], [3.0, 2.0]])
    assert x.sum().item() == 11 and x.mean(0).tolist() == [2.0, 3.5]
    assert x.max(1).indices.tolist() == [1, 0] and x.argmin().item() == 0
    assert x.prod().item() == 30 and x.norm(1).item() == 11
    assert x.var(0, correction=0).tolist() == [1.0, 2.25] and x.std(1).shape == (2,)
    assert x.logsumexp(1).shape == (2,) and x.min().item() == 1 and x.argmax(1).tolist() == [1, 0]


def test_errors():
    x = td.zeros(2, 3)
    with pytest.raises(IndexError, match=r"sum: dim 2 is out of range for a tensor with 2 dim"):
        F.sum(x, 2)
    with pytest.raises(ValueError, match="mean: dim"):
        F.mean(x, (1, -1))
    with pytest.raises(
        td.ShapeError, match=r"max: cannot reduce an empty dimension \(shape \(0, 3\)"
    ):
        F.max(td.zeros(0, 3))
    with pytest.raises(td.ShapeError, match="argmin: cannot reduce an empty"):
        F.argmin(td.zeros(2, 0), 1)
    with pytest.raises(TypeError, match="max: dim must be an int"):
        F.max(x, (0, 1))
    with pytest.raises(ValueError, match="norm: p must be .* got 'nuc'"):
        F.norm(x, "nuc")
    with pytest.raises(ValueError, match="got -1"):
        F.norm(x, -1)
