"""Winograd F(2x2, 3x3) transforms: the NumPy reference composes to a convolution and its
gradients, and the Numba kernels match the reference."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinydl.backend.kernels import numpy_ref as R
from tinydl.backend.kernels import winograd as W

NB = pytest.importorskip("tinydl.backend.kernels.numba_winograd", reason="Numba is not importable")


@st.composite
def geometry(draw):
    """``(n, cin, cout, h, w, padding)`` of a 3x3 stride-1 convolution, odd and tiny sizes too."""
    n, cin, cout = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + 2 * ph >= 3 and w + 2 * pw >= 3)
    return n, cin, cout, h, w, (ph, pw)


dtypes = st.sampled_from([np.float32, np.float64])


def _im2col_conv(x, w, padding):
    """The im2col reference: ``(y, dY -> (dx, dW))``."""
    n, cout = x.shape[0], w.shape[0]
    cols = R.im2col(x, 3, 3, 1, padding)
    y = (w.reshape(cout, -1) @ cols).reshape(cout, n, -1).transpose(1, 0, 2)
    oh, ow, *_ = R._geometry(x.shape, 3, 3, 1, padding, 1)

    def grads(dy):
        g2 = dy.transpose(1, 0, 2, 3).reshape(cout, -1)
        dx = R.col2im(w.reshape(cout, -1).T @ g2, x.shape, 3, 3, 1, padding)
        return dx, (g2 @ cols.T).reshape(w.shape)

    return y.reshape(n, cout, oh, ow), grads


@given(geometry(), st.booleans(), st.integers(0, 2**32 - 1))
def test_reference_transforms_compose_to_the_convolution_and_its_gradients(geo, bias, seed):
    n, cin, cout, h, w, padding = geo
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin, 3, 3))
    b = rng.standard_normal(cout) if bias else None
    oh, ow, th, tw = W.tiles(h, w, padding)
    u, v = W.weight_transform(wt), W.input_transform(x, padding)
    assert u.shape == (16, cout, cin) and v.shape == (16, cin, n * W.tiles_per_image(th, tw))
    assert not v.reshape(16, cin, n, th, tw + 1)[..., tw].any()  # each row's unused tile
    y = W.output_transform(u @ v, n, oh, ow, b)
    ref, grads = _im2col_conv(x, wt, padding)
    np.testing.assert_allclose(y, ref if b is None else ref + b.reshape(1, -1, 1, 1), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dm = W.output_transform_adjoint(dy)
    dx = W.input_transform_adjoint(u.transpose(0, 2, 1) @ dm, x.shape, padding)
    dw = W.weight_transform_adjoint(dm @ v.transpose(0, 2, 1))
    dx_ref, dw_ref = grads(dy)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, atol=1e-12)


def _tolerance(dtype):
    return {"rtol": 1e-6, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-13}


@given(geometry(), dtypes, st.booleans(), st.integers(0, 2**32 - 1))
def test_numba_transforms_match_the_reference(geo, dtype, bias, seed):
    n, cin, cout, h, w, padding = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    oh, ow, th, tw = W.tiles(h, w, padding)
    m = rng.standard_normal((16, cout, n, th, tw + 1)).astype(dtype)
    m[..., tw] = np.nan  # the unused tiles: output_transform must not read them
    m = m.reshape(16, cout, -1)
    dv = np.nan_to_num(m[:, :1].repeat(cin, 1))  # input_transform_adjoint needs them zero
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    dy = rng.standard_normal((n, cout, oh, ow)).astype(dtype)
    pairs = [
        (NB.input_transform(x, padding), W.input_transform(x, padding)),
        (NB.output_transform(m, n, oh, ow, b), W.output_transform(m, n, oh, ow, b)),
        (NB.output_transform_adjoint(dy), W.output_transform_adjoint(dy)),
        (
            NB.input_transform_adjoint(dv, x.shape, padding),
            W.input_transform_adjoint(dv, x.shape, padding),
        ),
    ]
    for got, want in pairs:
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **_tolerance(dtype))


def test_numba_transforms_write_into_out_views():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((16, 3, 2 * W.tiles_per_image(3, 3)))
    out = np.full((4, 3, 5, 6), np.nan)
    NB.output_transform(m, 2, 5, 6, None, out=out[1:3])
    np.testing.assert_allclose(out[1:3], W.output_transform(m, 2, 5, 6))
    assert np.isnan(out[0]).all() and np.isnan(out[3]).all()
    dx = np.full((3, 3, 4, 4), np.nan)
    v = rng.standard_normal((16, 3, 2, 2))  # 4x4 without padding: one tile (and one unused)
    v[..., 1] = 0
    v = v.reshape(16, 3, 4)
    NB.input_transform_adjoint(v, (2, 3, 4, 4), (0, 0), out=dx[:2])
    np.testing.assert_allclose(dx[:2], W.input_transform_adjoint(v, (2, 3, 4, 4), (0, 0)))
    assert np.isnan(dx[2]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("at", [(0, 0), (2, 3), (4, 4)])
def test_a_non_finite_input_spoils_exactly_its_receptive_field(bad, at):
    """Numba adds and subtracts (never multiplies by a zero of B or A), so a NaN or inf reaches
    the outputs whose 3x3 window holds it, as in the direct convolution, and no other."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 5))
    x[0, 1, at[0], at[1]] = bad
    wt = rng.uniform(0.5, 1.0, (3, 2, 3, 3))  # no zero weight: every window entry counts
    oh, ow, *_ = W.tiles(5, 5, (1, 1))
    y = NB.output_transform(NB.weight_transform(wt) @ NB.input_transform(x, (1, 1)), 1, oh, ow)
    ref, _ = _im2col_conv(x, wt, (1, 1))
    np.testing.assert_array_equal(~np.isfinite(y), ~np.isfinite(ref))
    windows = {(0, 0): 4, (2, 3): 9, (4, 4): 4}[at]  # outputs per channel that see the pixel
    assert (~np.isfinite(y)).sum() == 3 * windows


def test_tiles_refuses_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match="does not fit"):
        W.tiles(2, 5, (0, 0))
