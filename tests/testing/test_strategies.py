"""The public hypothesis strategies honour what they promise."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tinydl.testing import broadcastable_shapes, conv_params, shapes, tensors


@given(tensors(shape=shapes(max_dims=3), min_value=-2, max_value=5, avoid=(0.0, 1.0),
               noncontiguous=None))
def test_tensors_bounds_kinks_and_dtype(t):
    d = t.data
    assert d.dtype == np.float64 and t.requires_grad
    assert np.all(np.abs(d) >= 1e-3 * 0.99) and np.all(np.abs(d - 1) >= 1e-3 * 0.99)
    assert np.all(d >= -2 - 0.01) and np.all(d <= 5 + 0.01)


@given(tensors(shape=(2, 3), dtype=np.float32, noncontiguous=True))
def test_tensors_noncontiguous_float32(t):
    assert t.shape == (2, 3) and t.dtype == np.float32 and not t.data.flags.c_contiguous


@given(tensors(shape=(3,), dtype=np.int64))
def test_integer_tensors_do_not_require_grad(t):
    assert not t.requires_grad


@given(broadcastable_shapes(num_shapes=3))
def test_broadcastable_shapes_broadcast(shapes_):
    assert len(shapes_) == 3
    np.broadcast_shapes(*shapes_)


@given(conv_params())
def test_conv_params_are_consistent(p):
    n, cin, h, w = p["x_shape"]
    cout, cin_g, kh, kw = p["w_shape"]
    assert cin % p["groups"] == 0 and cout % p["groups"] == 0 and cin_g == cin // p["groups"]
    for size, k, s, pad, d in zip((h, w), (kh, kw), p["stride"], p["padding"], p["dilation"]):
        assert (size + 2 * pad - d * (k - 1) - 1) // s + 1 >= 1


@given(st.data())
def test_shapes_respect_limits(data):
    s = data.draw(shapes(min_dims=1, max_dims=2, max_side=3))
    assert 1 <= len(s) <= 2 and all(1 <= n <= 3 for n in s)
