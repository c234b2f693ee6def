import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, torch
from tinydl.testing import broadcastable_shapes, tensors

BINARY = [
    (F.add, np.add, lambda a, b: a + b),
    (F.sub, np.subtract, lambda a, b: a - b),
    (F.mul, np.multiply, lambda a, b: a * b),
]


@pytest.mark.parametrize("op,ref,tref", BINARY, ids=["add", "sub", "mul"])
@given(data=st.data())
def test_binary_broadcasting(backend, op, ref, tref, data):
    sa, sb = data.draw(broadcastable_shapes(2))
    a, b = data.draw(tensors(sa, noncontiguous=None)), data.draw(tensors(sb))
    check_op(op, [a, b], ref, tref, second_order=True, backend=backend)


@given(data=st.data())
def test_div(backend, data):
    sa, sb = data.draw(broadcastable_shapes(2))
    a = data.draw(tensors(sa))
    b = data.draw(tensors(sb, min_value=0.5, max_value=3.0))
    check_op(F.div, [a, b], np.divide, lambda x, y: x / y, second_order=True, backend=backend)


@given(tensors())
def test_neg(backend, a):
    check_op(F.neg, [a], np.negative, lambda x: -x, second_order=True, backend=backend)


@pytest.mark.parametrize("c", [2, 3, 0.5, -1.5, 0])
@given(a=tensors(min_value=0.5, max_value=3.0))
def test_pow_scalar(backend, c, a):
    check_op(
        lambda x: x**c, [a], lambda x: x**c, lambda x: x**c, second_order=True, backend=backend
    )


@given(data=st.data())
def test_pow_tensor_tensor(backend, data):
    sa, sb = data.draw(broadcastable_shapes(2))
    a = data.draw(tensors(sa, min_value=0.5, max_value=2.0))
    b = data.draw(tensors(sb, min_value=-2.0, max_value=2.0))
    check_op(F.pow, [a, b], np.power, torch and torch.pow, second_order=True, backend=backend)


@given(b=tensors(min_value=-2.0, max_value=2.0))
def test_scalar_pow_tensor(backend, b):
    check_op(
        lambda x: 2.0**x, [b], lambda x: 2.0**x, lambda x: 2.0**x, second_order=True,
        backend=backend,
    )


MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
@given(data=st.data())
def test_matmul(backend, sa, sb, data):
    a, b = data.draw(tensors(sa, noncontiguous=None)), data.draw(tensors(sb))
    check_op(F.matmul, [a, b], np.matmul, lambda x, y: x @ y, second_order=True, backend=backend)


def test_matmul_shape_error_names_both_shapes():
    with pytest.raises(td.ShapeError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) do not align: 4 != 5"):
        td.randn(3, 4) @ td.randn(5, 2)


def test_broadcast_error_names_op_and_shapes():
    with pytest.raises(td.ShapeError, match=r"add: shapes \(3,\) and \(4,\)"):
        td.randn(3) + td.randn(4)


def test_scalar_keeps_float32_and_reflected_ops(backend):
    x = backend.tensor([1.0, 2.0], requires_grad=True)
    for y in (x + 1.5, 1.5 + x, 2 * x, x / 2, 2 / x, 1 - x, x**2, 2**x, np.float32(2) * x):
        assert y.dtype == np.float32 and y.device == backend.device
    assert (backend.tensor([1, 2]) / 2).dtype == np.float32


def test_float32_and_float64_promote_like_pytorch(backend):
    x = td.ones(2, dtype="float32", requires_grad=True, device=backend.name)
    y = x * td.ones(2, dtype=td.float64, device=backend.name)
    assert y.dtype == np.float64
    y.sum().backward()
