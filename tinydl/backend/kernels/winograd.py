"""Winograd F(2x2, 3x3) transforms in plain NumPy: the reference for ``numba_winograd``.

A 3x3 convolution with stride 1 computes each 2x2 output tile from a 4x4 input tile in 16
products instead of 36 (Lavin & Gray, 2015): ``Y = A^T [(G W G^T) * (B^T d B)] A``. Summed over
the input channels, the 16 element-wise products become 16 GEMMs:

- ``U = G W G^T`` per ``(C_out, C_in)`` pair: ``(16, C_out, C_in)`` (``weight_transform``);
- ``V = B^T d B`` per 4x4 tile of the zero-padded input (tiles at stride 2, overlapping by 2):
  ``(16, C_in, T)`` with tile ``t = (n*TH + ty)*(TW + 1) + tx`` (``input_transform``): each
  tile row ends in one unused tile, always zero in ``V`` and ``dM``;
- ``M[xi] = U[xi] @ V[xi]`` for ``xi = 4*i + j``: ``(16, C_out, T)``;
- ``Y = A^T M A`` per tile, plus the bias, cut to ``(OH, OW)`` (``output_transform``).

``OH = H + 2*ph - 2``, ``TH = ceil(OH / 2)``: when ``OH`` is odd the last tile row reads one
row past the padded input (zeros) and its second output row is dropped.

NOTE: the unused tile per row (``TW + 1`` tiles a row, 7% more GEMM work at 28x28, 14% at
14x14) lets the Numba transforms run one long unit-stride loop over a whole image plane, where
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
    "BT",
    "G",
    "AT",
    "tiles",
    "tiles_per_image",
    "weight_transform",
    "weight_transform_adjoint",
    "input_transform",
    "input_transform_adjoint",
    "output_transform",
    "output_transform_adjoint",
]

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def tiles(h: int, w: int, padding) -> tuple[int, int, int, int]:
    """``(OH, OW, TH, TW)``: the output size of a 3x3, stride-1 convolution and its 2x2 tiles."""
    ph, pw = padding
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    if oh < 1 or ow < 1:
        raise ValueError(f"winograd: a 3x3 kernel does not fit {h}x{w} with padding {padding}")
    return oh, ow, (oh + 1) // 2, (ow + 1) // 2


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


def weight_transform(weight):
    """``weight`` ``(C_out, C_in, 3, 3)`` -> ``U`` ``(16, C_out, C_in)``, ``U = G W G^T``."""
    g = G.astype(weight.dtype)
    u = np.einsum("ai,oyij,bj->aboy", g, weight, g, optimize=True)
    return np.ascontiguousarray(u.reshape(16, *weight.shape[:2]))


def weight_transform_adjoint(du):
    """``dU`` ``(16, C_out, C_in)`` -> ``dW`` ``(C_out, C_in, 3, 3)``, ``dW = G^T dU G``."""
    g = G.astype(du.dtype)
    d4 = du.reshape(4, 4, *du.shape[1:])
    return np.ascontiguousarray(np.einsum("ai,aboy,bj->oyij", g, d4, g, optimize=True))


def _padded(x, padding, th, tw):
    """``x`` zero-padded to ``(N, C, 2*TH + 2, 2*TW + 2)``, ``padding`` at the top and left."""
    n, c, h, w = x.shape
    ph, pw = padding
    out = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def input_transform(x, padding):
    """``x`` ``(N, C, H, W)`` -> ``V`` ``(16, C, N*TH*(TW + 1))``, ``V = B^T d B`` per 4x4
    tile."""
    n, c, h, w = x.shape
    _, _, th, tw = tiles(h, w, padding)
    xp = _padded(x, padding, th, tw)
    sn, sc, sh, sw = xp.strides
    d = np.lib.stride_tricks.as_strided(
        xp, (n, c, th, tw, 4, 4), (sn, sc, 2 * sh, 2 * sw, sh, sw)
    )  # [n, c, ty, tx, i, j] = xp[n, c, 2*ty + i, 2*tx + j]
    bt = BT.astype(x.dtype)
    v = np.einsum("ai,nctwij,bj->abcntw", bt, d, bt, optimize=True)
    return _rows_padded(v, (16, c), n, th, tw)


def input_transform_adjoint(dv, x_shape, padding, out=None):
    """The adjoint of ``input_transform``: ``dV`` ``(16, C, N*TH*(TW + 1))`` -> ``dX`` of
    ``x_shape``; ``B dV B^T`` per tile, overlapping tiles adding up, padding dropped. Written
    into ``out`` when given."""
    n, c, h, w = x_shape
    ph, pw = padding
    _, _, th, tw = tiles(h, w, padding)
    bt = BT.astype(dv.dtype)
    dv = _rows_cut(dv, (4, 4, c), n, th, tw)
    d = np.einsum("ai,abcntw,bj->ncijtw", bt, dv, bt, optimize=True)
    acc = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=dv.dtype)
    for i in range(4):
        for j in range(4):  # within one offset the tiles hit distinct pixels
            acc[:, :, i : i + 2 * th : 2, j : j + 2 * tw : 2] += d[:, :, i, j]
    return _store(acc[:, :, ph : ph + h, pw : pw + w], out)


def _store(y, out):
    if out is None:
        return np.ascontiguousarray(y)
    out[...] = y
    return out


def output_transform(m, n, oh, ow, bias=None, out=None):
    """``M`` ``(16, C_out, N*TH*(TW + 1))`` -> ``Y`` ``(N, C_out, OH, OW)``: ``A^T M A`` per tile,
    plus ``bias`` ``(C_out,)`` when given. Written into ``out`` when given."""
    cout = m.shape[1]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    at = AT.astype(m.dtype)
    m = _rows_cut(m, (4, 4, cout), n, th, tw)
    y = np.einsum("ai,ijontw,bj->notawb", at, m, at, optimize=True)
    y = y.reshape(n, cout, 2 * th, 2 * tw)[:, :, :oh, :ow]
    if bias is not None:
        y = y + bias.reshape(1, cout, 1, 1)
    return _store(y, out)


def output_transform_adjoint(dy):
    """The adjoint of ``output_transform`` (bias aside): ``dY`` ``(N, C_out, OH, OW)`` ->
    ``dM`` ``(16, C_out, N*TH*(TW + 1))``, ``A dY A^T`` per tile (zeros past ``OH``, ``OW``)."""
    n, cout, oh, ow = dy.shape
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    full = np.zeros((n, cout, 2 * th, 2 * tw), dtype=dy.dtype)
    full[:, :, :oh, :ow] = dy
    at = AT.astype(dy.dtype)
    dm = np.einsum(
        "ai,notawb,bj->ijontw", at, full.reshape(n, cout, th, 2, tw, 2), at, optimize=True
    )
    return _rows_padded(dm, (16, cout), n, th, tw)
