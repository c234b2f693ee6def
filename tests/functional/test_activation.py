import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, torch
from tinydl.testing import shapes, tensors


def np_softmax(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def np_log_softmax(x, dim):
    z = x - x.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


OPS = [
    (F.softmax, np_softmax, torch and torch.softmax),
    (F.log_softmax, np_log_softmax, torch and torch.log_softmax),
]


@pytest.mark.parametrize("op,ref,tref", OPS, ids=["softmax", "log_softmax"])
@given(data=st.data())
def test_against_reference_gradcheck_and_second_order(backend, op, ref, tref, data):
    x = data.draw(tensors(shapes(min_dims=1), min_value=-5, max_value=5, noncontiguous=None))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    check_op(
        lambda t: op(t, dim), [x], lambda a: ref(a, dim), lambda t: tref(t, dim), second_order=True,
        backend=backend,
    )


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_zero_dim_input_is_one_row(backend, op):
    x = backend.tensor(3.0, dtype=td.float64, requires_grad=True)
    out = op(x)
    expected = 1.0 if op is F.softmax else 0.0
    assert out.shape == () and out.item() == expected
    td.gradcheck(op, [x])


MAGNITUDES = [[[-1000.0, 1.0]], [[1e20, -1e20, 0.0]], [[-1e20, -1e20]], [[3e38, -3e38, 1.0]]]


@pytest.mark.parametrize(
    "logits,dtype",
    [(v, d) for v in MAGNITUDES for d in ("float32", "float64")] + [([[1e308, -1e308]], "float64")],
)
def test_stable_for_any_magnitude(backend, logits, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid RuntimeWarning
        for op, tref in zip((F.softmax, F.log_softmax), ("softmax", "log_softmax")):
            x = backend.tensor(logits, dtype=dtype, requires_grad=True)
            out = op(x, dim=1)
            out.backward(td.ones_like(out))
            got, grad = backend.numpy(out), backend.numpy(x.grad)
            assert np.isfinite(got).all() or op is F.log_softmax
            assert np.isfinite(grad).all()
            if torch is not None:
                t = torch.tensor(np.array(logits, dtype=dtype), requires_grad=True)
                ref = getattr(torch, tref)(t, dim=1)
                ref.backward(torch.ones_like(ref))
                np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-6)
                np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_softmax_rows_sum_to_one_and_known_values(backend):
    x = backend.tensor([[0.0, np.log(3.0)], [5.0, 5.0]], dtype=td.float64)
    np.testing.assert_allclose(backend.numpy(F.softmax(x)), [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)
    np.testing.assert_allclose(backend.numpy(F.log_softmax(x)), np.log([[0.25, 0.75], [0.5, 0.5]]))


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_float32_stays_float32(backend, op):
    x = td.randn(3, 4, requires_grad=True, device=backend.name)
    out = op(x, dim=0)
    (out * td.randn(3, 4, device=backend.name)).sum().backward()
    assert out.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_tensor_method_and_dim_error(op):
    x = td.randn(2, 3)
    np.testing.assert_array_equal(getattr(x, op.__name__)(dim=0).data, op(x, 0).data)
    with pytest.raises(IndexError, match=f"{op.__name__}: dim 2 is out of range"):
        op(x, dim=2)


def test_docstring_examples_run():
    import doctest

    from tinydl.functional import activation

    result = doctest.testmod(
        activation, extraglobs={"td": td}, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0 and result.attempted >= len(activation.__all__)
