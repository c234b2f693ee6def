"""gradcheck and gradgradcheck fail loudly, with the input, the element and the culprit op."""

import numpy as np
import pytest

import tinydl as td


class WrongSquare(td.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x * grad  # should be 2 x


class DetachedSquare(td.Function):
    """Right first derivative, but its backward uses a constant: second derivative is wrong."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return x * x

    @staticmethod
    def backward(ctx, grad):
        return 2 * td.Tensor(ctx.x) * grad


def x64(*shape):
    return td.randn(*shape, dtype=td.float64, requires_grad=True)


def test_passes_on_correct_composite():
    assert td.gradcheck(lambda a, b: (a @ b) * 2, (x64(3, 4), x64(4, 2)))


def test_names_input_element_and_both_values():
    x = td.tensor([1.0, 2.0], dtype=td.float64, requires_grad=True)
    with pytest.raises(td.GradcheckError) as err:
        td.gradcheck(WrongSquare.apply, x)
    msg = str(err.value)
    assert "input 0" in msg and "index (" in msg and "analytic" in msg and "numeric" in msg


def test_names_the_first_wrong_op_of_a_composite():
    with pytest.raises(td.GradcheckError, match=r"first op whose own backward is wrong: op #\d+ WrongSquare"):
        td.gradcheck(lambda t: WrongSquare.apply(t * 2.0) * 3.0, x64(3))


def test_gradgradcheck_catches_a_non_differentiable_backward():
    x = x64(3)
    assert td.gradcheck(DetachedSquare.apply, x)
    with pytest.raises(td.GradcheckError):
        td.gradgradcheck(DetachedSquare.apply, x)


def test_requires_float64():
    with pytest.raises(td.DTypeError, match="float64"):
        td.gradcheck(lambda t: t * 2, td.ones(2, requires_grad=True))


def test_requires_an_input_with_grad():
    with pytest.raises(ValueError, match="requires grad"):
        td.gradcheck(lambda t: t * 2, td.ones(2, dtype=td.float64))


def test_unused_input_has_zero_gradient():
    a, b = x64(2), x64(2)
    assert td.gradcheck(lambda p, q: p * 2, (a, b))


def test_restores_inputs():
    x = x64(4)
    before = x.data.copy()
    td.gradcheck(lambda t: t * t, x)
    assert np.array_equal(before, x.data)
