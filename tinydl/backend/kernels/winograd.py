"""Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms in plain NumPy: the reference for
``numba_winograd`` (``tile=2``) and ``numba_winograd4`` (``tile=4``).

A 3x3 convolution with stride 1 computes each ``m x m`` output tile (``m = tile``) from an
``a x a`` input tile, ``a = m + 2``, in ``a*a`` products instead of ``9*m*m`` (Lavin & Gray,
2015): ``Y = A^T [(G W G^T) * (B^T d B)] A``; F(2x2): 16 products for 4 outputs, F(4x4): 36
for 16. Summed over the input channels, the ``a*a`` element-wise products become GEMMs:

- ``U = G W G^T`` per ``(C_out, C_in)`` pair: ``(a*a, C_out, C_in)`` (``weight_transform``);
- ``V = B^T d B`` per ``a x a`` tile of the zero-padded input (tiles at stride ``m``,
  overlapping by 2): ``(a*a, C_in, T)`` with tile ``t = (n*TH + ty)*(TW + 1) + tx``
  (``input_transform``): each tile row ends in one unused tile, always zero in ``V`` and
  ``dM``;
- ``M[xi] = U[xi] @ V[xi]`` for ``xi = a*i + j``: ``(a*a, C_out, T)``;
- ``Y = A^T M A`` per tile, plus the bias, cut to ``(OH, OW)`` (``output_transform``).

``OH = H + 2*ph - 2``, ``TH = ceil(OH / m)``: when ``m`` does not divide ``OH`` the last tile
row reads rows past the padded input (zeros) and its extra output rows are dropped.

NOTE: the unused tile per row (``TW + 1`` tiles a row; F(2x2): 7% more GEMM work at 28x28,
14% at 14x14) lets the Numba transforms run one long unit-stride loop over a whole image plane, where
a loop per tile row (7 or 14 tiles) did not vectorize: the input transform of the 28x28x32
layer measured 3.9 against 6.1 ms per 64 images, one thread.

The backward passes use the adjoints of the same linear maps: ``dM = A dY A^T``
(``output_transform_adjoint``), ``dU[xi] = dM[xi] @ V[xi]^T`` -> ``dW = G^T dU G``
(``weight_transform_adjoint``), ``dV[xi] = U[xi]^T @ dM[xi]`` -> ``dX = B dV B^T`` with the
overlapping tiles adding up (``input_transform_adjoint``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MATRICES",
    "tiles",
    "tiles_per_image",
    "weight_transform",
    "weight_transform_adjoint",
    "input_transform",
    "input_transform_adjoint",
    "output_transform",
    "output_transform_adjoint",
]

# ``(B^T, G, A^T)`` per output tile side: F(2x2, 3x3) with the points (0, 1, -1, inf), F(4x4,
# 3x3) with (0, 1, -1, 2, -2, inf) (Lavin & Gray's matrices).
MATRICES = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            dtype=np.float64,
        ),
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ]
        ),
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
            dtype=np.float64,
        ),
    ),
}


def _matrices(tile, dtype):
    if tile not in MATRICES:
        raise ValueError(f"winograd: tile must be one of {sorted(MATRICES)}, got {tile!r}")
    return [mat.astype(dtype) for mat in MATRICES[tile]]


def tiles(h: int, w: int, padding, tile: int = 2) -> tuple[int, int, int, int]:
    """``(OH, OW, TH, TW)``: the output size of a 3x3, stride-1 convolution and its
    ``tile x tile`` output tiles."""
    ph, pw = padding
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    if oh < 1 or ow < 1:
        raise ValueError(f"winograd: a 3x3 kernel does not fit {h}x{w} with padding {padding}")
    return oh, ow, -(-oh // tile), -(-ow // tile)


def tiles_per_image(th: int, tw: int) -> int:
    """Tiles of one image in ``V``/``M``: ``TH`` rows of ``TW + 1`` (the last one unused)."""
    return th * (tw + 1)


def _rows_padded(v, lead, n, th, tw):
    """``(…, N*TH*TW)`` compact tiles -> ``(…, N*TH*(TW + 1))`` with a zero tile a row."""
    v = v.reshape(*lead, n, th, tw)
    pad = [(0, 0)] * (v.ndim - 1) + [(0, 1)]
    return np.ascontiguousarray(np.pad(v, pad).reshape(*lead, n * th * (tw + 1)))


def _rows_cut(v, lead, n, th, tw):
    """The inverse of ``_rows_padded``: ``(*lead, N, TH, TW)``, the unused tiles dropped."""
    return v.reshape(*lead, n, th, tw + 1)[..., :tw]


# NOTE: the weight transforms round G to the weights' dtype. In float64 with one rounding at
# the end they measured no better (F(4x4) float32 error 2-5e-6 of the largest value either way:
# the input and output transforms dominate it).


def weight_transform(weight, tile=2):
    """``weight`` ``(C_out, C_in, 3, 3)`` -> ``U`` ``(a*a, C_out, C_in)``, ``U = G W G^T``."""
    _, g, _ = _matrices(tile, weight.dtype)
    u = np.einsum("ai,oyij,bj->aboy", g, weight, g, optimize=True)
    return np.ascontiguousarray(u.reshape(len(g) ** 2, *weight.shape[:2]))


def weight_transform_adjoint(du, tile=2):
    """``dU`` ``(a*a, C_out, C_in)`` -> ``dW`` ``(C_out, C_in, 3, 3)``, ``dW = G^T dU G``."""
    _, g, _ = _matrices(tile, du.dtype)
    d4 = du.reshape(len(g), len(g), *du.shape[1:])
    return np.ascontiguousarray(np.einsum("ai,aboy,bj->oyij", g, d4, g, optimize=True))


def _padded(x, padding, th, tw, tile):
    """``x`` zero-padded to ``(N, C, m*TH + 2, m*TW + 2)``, ``padding`` at the top and left."""
    n, c, h, w = x.shape
    ph, pw = padding
    out = np.zeros((n, c, tile * th + 2, tile * tw + 2), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def input_transform(x, padding, tile=2):
    """``x`` ``(N, C, H, W)`` -> ``V`` ``(a*a, C, N*TH*(TW + 1))``, ``V = B^T d B`` per
    ``a x a`` tile."""
    n, c, h, w = x.shape
    bt, _, _ = _matrices(tile, x.dtype)
    a = len(bt)
    _, _, th, tw = tiles(h, w, padding, tile)
    xp = _padded(x, padding, th, tw, tile)
    sn, sc, sh, sw = xp.strides
    d = np.lib.stride_tricks.as_strided(
        xp, (n, c, th, tw, a, a), (sn, sc, tile * sh, tile * sw, sh, sw)
    )  # [n, c, ty, tx, i, j] = xp[n, c, m*ty + i, m*tx + j]
    v = np.einsum("ai,nctwij,bj->abcntw", bt, d, bt, optimize=True)
    return _rows_padded(v, (a * a, c), n, th, tw)


def input_transform_adjoint(dv, x_shape, padding, out=None, tile=2):
    """The adjoint of ``input_transform``: ``dV`` ``(a*a, C, N*TH*(TW + 1))`` -> ``dX`` of
    ``x_shape``; ``B dV B^T`` per tile, overlapping tiles adding up, padding dropped. Written
    into ``out`` when given."""
    n, c, h, w = x_shape
    ph, pw = padding
    bt, _, _ = _matrices(tile, dv.dtype)
    a = len(bt)
    _, _, th, tw = tiles(h, w, padding, tile)
    dv = _rows_cut(dv, (a, a, c), n, th, tw)
    d = np.einsum("ai,abcntw,bj->ncijtw", bt, dv, bt, optimize=True)
    acc = np.zeros((n, c, tile * th + 2, tile * tw + 2), dtype=dv.dtype)
    for i in range(a):
        for j in range(a):  # within one offset the tiles hit distinct pixels
            acc[:, :, i : i + tile * th : tile, j : j + tile * tw : tile] += d[:, :, i, j]
    return _store(acc[:, :, ph : ph + h, pw : pw + w], out)


def _store(y, out):
    if out is None:
        return np.ascontiguousarray(y)
    out[...] = y
    return out


def output_transform(m, n, oh, ow, bias=None, out=None, tile=2):
    """``M`` ``(a*a, C_out, N*TH*(TW + 1))`` -> ``Y`` ``(N, C_out, OH, OW)``: ``A^T M A`` per
    tile, plus ``bias`` ``(C_out,)`` when given. Written into ``out`` when given."""
    cout = m.shape[1]
    th, tw = -(-oh // tile), -(-ow // tile)
    _, _, at = _matrices(tile, m.dtype)
    a = at.shape[1]
    m = _rows_cut(m, (a, a, cout), n, th, tw)
    y = np.einsum("ai,ijontw,bj->notawb", at, m, at, optimize=True)
    y = y.reshape(n, cout, tile * th, tile * tw)[:, :, :oh, :ow]
    if bias is not None:
        y = y + bias.reshape(1, cout, 1, 1)
    return _store(y, out)


def output_transform_adjoint(dy, tile=2):
    """The adjoint of ``output_transform`` (bias aside): ``dY`` ``(N, C_out, OH, OW)`` ->
    ``dM`` ``(a*a, C_out, N*TH*(TW + 1))``, ``A dY A^T`` per tile (zeros past ``OH``,
    ``OW``)."""
    n, cout, oh, ow = dy.shape
    th, tw = -(-oh // tile), -(-ow // tile)
    full = np.zeros((n, cout, tile * th, tile * tw), dtype=dy.dtype)
    full[:, :, :oh, :ow] = dy
    _, _, at = _matrices(tile, dy.dtype)
    a = at.shape[1]
    dm = np.einsum(
        "ai,notawb,bj->ijontw", at, full.reshape(n, cout, th, tile, tw, tile), at, optimize=True
    )
    return _rows_padded(dm, (a * a, cout), n, th, tw)
