import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, torch
from tinydl.testing import shapes, tensors


@given(data=st.data(), use_bias=st.booleans())
def test_linear_any_leading_dims(backend, data, use_bias):
    lead = data.draw(shapes(min_dims=0, max_dims=3, max_side=3))
    n_in, n_out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    x = data.draw(tensors(lead + (n_in,), noncontiguous=None))
    w = data.draw(tensors((n_out, n_in), noncontiguous=None))
    inputs = [x, w]
    if use_bias:
        inputs.append(data.draw(tensors((n_out,))))

    def ref(a, b, c=None):
        out = np.einsum("...i,oi->...o", a, b)
        return out if c is None else out + c

    check_op(
        F.linear, inputs, ref, torch and torch.nn.functional.linear, second_order=True,
        backend=backend,
    )


def test_linear_without_grad_on_weight_or_input(backend):
    x = td.randn(2, 3, dtype=td.float64, device=backend.name)
    w = td.randn(4, 3, dtype=td.float64, requires_grad=True, device=backend.name)
    F.linear(x, w).sum().backward()
    np.testing.assert_allclose(backend.numpy(w.grad), np.tile(backend.numpy(x).sum(0), (4, 1)))
    x.requires_grad = True
    w2 = td.randn(4, 3, dtype=td.float64, device=backend.name)
    F.linear(x, w2).sum().backward()
    np.testing.assert_allclose(backend.numpy(x.grad), np.tile(backend.numpy(w2).sum(0), (2, 1)))


def test_float32_stays_float32(backend):
    x = td.randn(2, 5, 3, requires_grad=True, device=backend.name)
    w = td.randn(4, 3, requires_grad=True, device=backend.name)
    b = td.randn(4, requires_grad=True, device=backend.name)
    out = F.linear(x, w, b)
    out.sum().backward()
    assert out.dtype == np.float32 and out.shape == (2, 5, 4)
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    assert b.grad.shape == (4,)


def test_errors_name_shapes():
    with pytest.raises(
        td.ShapeError,
        match=r"linear: input has 3 features but weight expects 5 "
        r"\(input \(2, 3\), weight \(4, 5\)\)",
    ):
        F.linear(td.randn(2, 3), td.randn(4, 5))
    with pytest.raises(td.ShapeError, match=r"linear: weight must be 2-D"):
        F.linear(td.randn(2, 3), td.randn(3))
    with pytest.raises(td.ShapeError, match=r"linear: bias must have shape \(4,\)"):
        F.linear(td.randn(2, 3), td.randn(4, 3), td.randn(3))
