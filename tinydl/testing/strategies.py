"""Hypothesis strategies for tensors, broadcastable shapes and convolution parameters."""

from __future__ import annotations

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - exercised only without hypothesis
    raise ImportError("tinydl.testing needs hypothesis: pip install 'tinydl[dev]'") from exc

from ..autograd import Tensor

__all__ = ["shapes", "tensors", "broadcastable_shapes", "conv_params"]


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 5):
    """Array shapes with ``min_dims..max_dims`` dimensions of ``min_side..max_side``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


@st.composite
def tensors(draw, shape=None, dtype=np.float64, min_value: float = -3.0,
            max_value: float = 3.0, requires_grad: bool = True, avoid=(), min_gap: float = 1e-3,
            noncontiguous: bool | None = False):
    """Tensors of ``shape`` (a tuple or a strategy; default ``shapes()``) with finite values in
    ``[min_value, max_value]``. Values within ``min_gap`` of a point in ``avoid`` (kinks such as
    0 for ``abs``) are moved away. ``noncontiguous=None`` draws both layouts."""
    if shape is None:
        shape = shapes()
    if not isinstance(shape, tuple):
        shape = draw(shape)
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False, width=64)
    data = draw(hnp.arrays(np.float64, shape, elements=elements))
    for point in avoid:
        near = np.abs(data - point) < min_gap
        data = np.where(near, point + np.where(data >= point, min_gap, -min_gap) * 2, data)
    data = data.astype(dtype)
    if noncontiguous is None:
        noncontiguous = draw(st.booleans())
    if noncontiguous and data.ndim:
        # same values, every other element of a wider buffer along the last axis
        wide = np.zeros(data.shape[:-1] + (2 * data.shape[-1],), dtype)
        wide[..., ::2] = data
        data = wide[..., ::2]
    return Tensor(data, requires_grad=requires_grad and np.dtype(dtype).kind == "f")


@st.composite
def broadcastable_shapes(draw, num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3,
                         max_side: int = 4):
    """A tuple of ``num_shapes`` shapes that broadcast together (some dims 1, some dropped)."""
    base = draw(shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    result = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, base_shape=base, min_dims=min_dims, max_dims=max_dims,
        max_side=max_side))
    return result.input_shapes


@st.composite
def conv_params(draw, max_batch: int = 2, max_channels: int = 3, max_size: int = 7,
                max_kernel: int = 3, groups: bool = True):
    """A dict of consistent conv2d arguments: ``x_shape``, ``w_shape``, ``stride``, ``padding``,
    ``dilation``, ``groups``; the padded input always fits the dilated kernel."""
    g = draw(st.integers(1, 2)) if groups else 1
    cin = g * draw(st.integers(1, max_channels))
    cout = g * draw(st.integers(1, max_channels))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    min_h = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    min_w = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    h = draw(st.integers(min_h, max(min_h, max_size)))
    w = draw(st.integers(min_w, max(min_w, max_size)))
    n = draw(st.integers(1, max_batch))
    return {"x_shape": (n, cin, h, w), "w_shape": (cout, cin // g, kh, kw), "stride": stride,
            "padding": padding, "dilation": dilation, "groups": g}
