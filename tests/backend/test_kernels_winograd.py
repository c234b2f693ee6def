"""Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms: the NumPy reference composes to a
convolution and its gradients, and the Numba kernels match the reference."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinydl.backend.kernels import numpy_ref as R
from tinydl.backend.kernels import winograd as W

NB = pytest.importorskip("tinydl.backend.kernels.numba_winograd", reason="Numba is not importable")
from tinydl.backend.kernels import numba_winograd4 as NB4  # noqa: E402  (Numba is importable)

KERNELS = {2: NB, 4: NB4}  # output tile side -> its Numba module


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


@pytest.mark.parametrize("tile", [2, 4])
@given(geo=geometry(), bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_reference_transforms_compose_to_the_convolution_and_its_gradients(tile, geo, bias, seed):
    n, cin, cout, h, w, padding = geo
    a2 = (tile + 2) ** 2
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin, 3, 3))
    b = rng.standard_normal(cout) if bias else None
    oh, ow, th, tw = W.tiles(h, w, padding, tile)
    u, v = W.weight_transform(wt, tile), W.input_transform(x, padding, tile)
    assert u.shape == (a2, cout, cin) and v.shape == (a2, cin, n * W.tiles_per_image(th, tw))
    assert not v.reshape(a2, cin, n, th, tw + 1)[..., tw].any()  # each row's unused tile
    y = W.output_transform(u @ v, n, oh, ow, b, tile=tile)
    ref, grads = _im2col_conv(x, wt, padding)
    np.testing.assert_allclose(y, ref if b is None else ref + b.reshape(1, -1, 1, 1), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dm = W.output_transform_adjoint(dy, tile)
    dx = W.input_transform_adjoint(u.transpose(0, 2, 1) @ dm, x.shape, padding, tile=tile)
    dw = W.weight_transform_adjoint(dm @ v.transpose(0, 2, 1), tile)
    dx_ref, dw_ref = grads(dy)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, atol=1e-12)


def _tolerance(dtype, want, tile):
    """float32: rounding of up to ``a*a`` terms (coefficients up to 8 in F(4x4)) in another
    order than NumPy's, relative to the largest value."""
    if dtype != np.float32:
        return {"rtol": 1e-13, "atol": 1e-13}
    scale = max(1.0, float(np.abs(np.nan_to_num(want)).max(initial=0)))
    return {"rtol": 1e-6, "atol": 4e-7 * (tile + 2) ** 2 * scale}


@pytest.mark.parametrize("tile", [2, 4])
@given(geo=geometry(), dtype=dtypes, bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_numba_transforms_match_the_reference(tile, geo, dtype, bias, seed):
    n, cin, cout, h, w, padding = geo
    nb, a2 = KERNELS[tile], (tile + 2) ** 2
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    oh, ow, th, tw = W.tiles(h, w, padding, tile)
    m = rng.standard_normal((a2, cout, n, th, tw + 1)).astype(dtype)
    m[..., tw] = np.nan  # the unused tiles: output_transform must not read them
    m = m.reshape(a2, cout, -1)
    dv = np.nan_to_num(m[:, :1].repeat(cin, 1))  # input_transform_adjoint needs them zero
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    dy = rng.standard_normal((n, cout, oh, ow)).astype(dtype)
    wt = rng.standard_normal((cout, cin, 3, 3)).astype(dtype)
    pairs = [
        (nb.weight_transform(wt), W.weight_transform(wt, tile)),
        (nb.weight_transform_adjoint(m[:, :, :cin]), W.weight_transform_adjoint(m[:, :, :cin], tile)),
        (nb.input_transform(x, padding), W.input_transform(x, padding, tile)),
        (nb.output_transform(m, n, oh, ow, b), W.output_transform(m, n, oh, ow, b, tile=tile)),
        (nb.output_transform_adjoint(dy), W.output_transform_adjoint(dy, tile)),
        (
            nb.input_transform_adjoint(dv, x.shape, padding),
            W.input_transform_adjoint(dv, x.shape, padding, tile=tile),
        ),
    ]
    for got, want in pairs:
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **_tolerance(dtype, want, tile))


@pytest.mark.parametrize("tile", [2, 4])
def test_numba_transforms_write_into_out_views(tile):
    nb, a2, side = KERNELS[tile], (tile + 2) ** 2, tile + 2
    rng = np.random.default_rng(0)
    _, _, th, tw = W.tiles(7, 8, (0, 0), tile)  # a 5x6 output from a 7x8 input
    m = rng.standard_normal((a2, 3, 2 * W.tiles_per_image(th, tw)))
    out = np.full((4, 3, 5, 6), np.nan)
    nb.output_transform(m, 2, 5, 6, None, out=out[1:3])
    np.testing.assert_allclose(out[1:3], W.output_transform(m, 2, 5, 6, tile=tile))
    assert np.isnan(out[0]).all() and np.isnan(out[3]).all()
    dx = np.full((3, 3, side, side), np.nan)
    v = rng.standard_normal((a2, 3, 2, 2))  # one a x a tile without padding (and one unused)
    v[..., 1] = 0
    v = v.reshape(a2, 3, 4)
    shape = (2, 3, side, side)
    nb.input_transform_adjoint(v, shape, (0, 0), out=dx[:2])
    np.testing.assert_allclose(dx[:2], W.input_transform_adjoint(v, shape, (0, 0), tile=tile))
    assert np.isnan(dx[2]).all()


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("at", [(0, 0), (2, 3), (4, 4), (6, 5)])
def test_a_non_finite_input_spoils_its_receptive_field(tile, bad, at):
    """The Numba transforms never multiply by a zero of B or A, so a NaN or inf reaches every
    output whose 3x3 window holds it, as in the direct convolution. F(2x2): those and no
    other. F(4x4): also the other outputs of the output tiles whose input tile holds it (its
    B has no zero-free structure to cancel in), never anything outside them."""
    nb = KERNELS[tile]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 7, 7))
    x[0, 1, at[0], at[1]] = bad
    wt = rng.uniform(0.5, 1.0, (3, 2, 3, 3))  # no zero weight: every window entry counts
    oh, ow, *_ = W.tiles(7, 7, (1, 1))
    y = nb.output_transform(nb.weight_transform(wt) @ nb.input_transform(x, (1, 1)), 1, oh, ow)
    ref, _ = _im2col_conv(x, wt, (1, 1))
    spoiled, window = ~np.isfinite(y), ~np.isfinite(ref)
    assert spoiled[:, 0].any() and (spoiled == spoiled[:, :1]).all()  # all output channels
    if tile == 2:
        np.testing.assert_array_equal(spoiled, window)
        return
    assert (spoiled | ~window).all()
    reach = np.zeros_like(spoiled[0, 0])  # outputs of the tiles whose 6x6 input holds the pixel
    i, j = at[0] + 1, at[1] + 1  # padded coordinates
    for ty in range(max(0, (i - 5 + 3) // 4), i // 4 + 1):
        for tx in range(max(0, (j - 5 + 3) // 4), j // 4 + 1):
            reach[4 * ty : 4 * ty + 4, 4 * tx : 4 * tx + 4] = True
    assert not (spoiled[0, 0] & ~reach).any()


@pytest.mark.parametrize("tile", [2, 4])
def test_numba_transforms_refuse_arrays_of_the_wrong_shape(tile):
    """The compiled loops do not check bounds: the wrappers do, naming the op and shapes."""
    nb, other = KERNELS[tile], KERNELS[6 - tile]
    x = np.zeros((2, 3, 8, 8))
    m = other.output_transform_adjoint(x)  # the other tile size's M
    with pytest.raises(ValueError, match=r"output_transform: M must have shape"):
        nb.output_transform(m, 2, 8, 8)
    with pytest.raises(ValueError, match=r"output_transform: out must have shape"):
        nb.output_transform(nb.output_transform_adjoint(x), 2, 8, 8, out=np.zeros((2, 3, 8, 7)))
    with pytest.raises(ValueError, match=r"output_transform: bias must have shape \(3,\)"):
        nb.output_transform(nb.output_transform_adjoint(x), 2, 8, 8, bias=np.zeros(4))
    with pytest.raises(ValueError, match=r"input_transform_adjoint: dV must have shape"):
        nb.input_transform_adjoint(other.input_transform(x, (1, 1)), x.shape, (1, 1))
    v = nb.input_transform(x, (1, 1))
    with pytest.raises(ValueError, match=r"input_transform_adjoint: out must have shape"):
        nb.input_transform_adjoint(v, x.shape, (1, 1), out=np.zeros((2, 3, 8, 9)))


def test_tiles_refuses_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match="does not fit"):
        W.tiles(2, 5, (0, 0))
