"""einsum against NumPy and torch.einsum (forward and gradients), second derivatives, and its
errors."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op

torch = pytest.importorskip("torch", reason="einsum is compared with torch.einsum")

# (subscripts, operand shapes): every feature of NumPy's subscripts at least once
CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (3, 3, 4)]),  # ellipsis dims broadcast
    ("i,j->ij", [(3,), (4,)]),
    ("ii->", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("iij->ji", [(3, 3, 2)]),
    ("ij,jk", [(2, 3), (3, 4)]),  # implicit output
    ("ba", [(2, 3)]),  # implicit output is in alphabetical order: a transpose
    ("ii", [(3, 3)]),  # implicit trace
    ("i...->...", [(2, 3, 4)]),
    ("i...,i...->...", [(2, 1, 3), (2, 4, 1)]),
    ("ijk->j", [(2, 3, 4)]),  # indices only in the operand are broadcast back
    ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 4)]),
    ("ij,ij->ij", [(1, 3), (4, 3)]),  # a size-1 named dimension broadcasts too (NumPy 2)
    ("b i, b j -> i j", [(2, 3), (2, 4)]),  # spaces are ignored
]


def _operands(shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _torch_einsum(subscripts):
    # NOTE: torch.einsum does not broadcast a size-1 named dimension, only ellipsis ones
    return lambda *ts: torch.einsum(subscripts, *ts)


@pytest.mark.parametrize(("subscripts", "shapes"), CASES, ids=[c[0] for c in CASES])
def test_einsum_matches_numpy_and_its_gradients_are_right(backend, subscripts, shapes):
    inputs = [td.tensor(a, requires_grad=True) for a in _operands(shapes)]
    check_op(
        lambda *ts: F.einsum(subscripts, *ts),
        inputs,
        lambda *arrays: np.einsum(subscripts, *arrays),
        second_order=True,
        backend=backend,
    )


TORCH_CASES = [c for c in CASES if c[0] != "ij,ij->ij"]


@pytest.mark.parametrize(("subscripts", "shapes"), TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_einsum_matches_torch_forward_and_gradients(subscripts, shapes, dtype):
    arrays = _operands(shapes, seed=1, dtype=dtype)
    ours = [td.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = F.einsum(subscripts, *ours), torch.einsum(subscripts, *theirs)
    assert out.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **tol)
    g = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    out.backward(td.tensor(g))
    ref.backward(torch.tensor(g))
    for x, t in zip(ours, theirs):
        assert x.grad.dtype == dtype and x.grad.shape == x.shape
        np.testing.assert_allclose(x.grad.data, t.grad.numpy(), **tol)


def test_operands_may_come_as_a_list_and_td_einsum_is_the_same_op():
    a, b = (td.tensor(x) for x in _operands([(2, 3), (3, 4)]))
    want = a.data @ b.data
    np.testing.assert_allclose(F.einsum("ij,jk->ik", [a, b]).data, want)
    np.testing.assert_allclose(td.einsum("ij,jk->ik", a, b).data, want)


def test_third_derivative_of_a_product_of_three_operands():
    # y = sum_i x_i^3 written as einsum: d^3y/dx^3 = 6 everywhere
    x = td.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    y = F.einsum("i,i,i->", x, x, x)
    (g1,) = td.grad(y, [x], create_graph=True)
    np.testing.assert_allclose(g1.data, 3 * x.data**2)
    (g2,) = td.grad(g1.sum(), [x], create_graph=True)
    np.testing.assert_allclose(g2.data, 6 * x.data)
    (g3,) = td.grad(g2.sum(), [x])
    np.testing.assert_allclose(g3.data, [6.0, 6.0, 6.0])


def test_only_the_operands_that_need_it_get_a_gradient():
    a = td.tensor(_operands([(2, 3)])[0], requires_grad=True)
    b = td.tensor(_operands([(3, 4)])[0])
    F.einsum("ij,jk->ik", a, b).sum().backward()
    np.testing.assert_allclose(a.grad.data, np.tile(b.data.sum(1), (2, 1)))
    assert b.grad is None


@pytest.mark.parametrize(
    ("subscripts", "shapes", "message"),
    [
        ("ij,jk->ik", [(2, 3)], "'ij,jk->ik' name 2 operands but got 1"),
        (
            "ij,jk->ik",
            [(2, 3), (4, 5)],
            "index 'j' has size 3 in operand 0 (shape (2, 3)) but 4 in operand 1 (shape (4, 5))",
        ),
        ("ijk", [(2, 3)], "operand 0 has shape (2, 3) (2 dimensions) but its subscripts 'ijk'"),
        ("i1", [(2, 3)], "operand 0 has '1'"),
        ("i->j->k", [(2,)], "contain '->' more than once"),
        ("ij->ii", [(2, 2)], "repeat 'i' in the output"),
        ("ij->k", [(2, 2)], "output index 'k' is in no operand"),
        ("...i->i", [(2, 3)], "the output needs '...' too"),
        ("ii->i", [(2, 3)], "repeats index 'i' over dimensions of different sizes"),
    ],
)
def test_errors_name_the_op_the_subscripts_and_the_shapes(subscripts, shapes, message):
    operands = [td.tensor(a) for a in _operands(shapes)]
    with pytest.raises(td.ShapeError, match="^einsum: ") as info:
        F.einsum(subscripts, *operands)
    assert message in str(info.value)
