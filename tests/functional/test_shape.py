import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinydl as td
import tinydl.functional as F
from tests.op_check import check_op, torch
from tinydl.tensor_methods import _TENSOR_METHODS
from tinydl.testing import shapes, tensors

SHAPE_OPS = {
    "reshape",
    "view",
    "flatten",
    "transpose",
    "permute",
    "squeeze",
    "unsqueeze",
    "expand",
    "broadcast_to",
    "split",
    "chunk",
    "flip",
    "repeat",
}
REDUCTION_OPS = {
    "sum",
    "mean",
    "max",
    "min",
    "var",
    "std",
    "logsumexp",
    "prod",
    "argmax",
    "argmin",
    "norm",
}


@pytest.mark.parametrize("name", sorted((SHAPE_OPS | REDUCTION_OPS) & set(_TENSOR_METHODS)))
def test_tensor_methods_exist(name):
    assert callable(getattr(F, name))


def test_methods_and_existing_ops(backend):
    x = td.arange(6, device=backend.name).float().requires_grad_()
    y = x.view(2, 3).transpose(0, 1).permute(1, 0).unsqueeze(0).squeeze(0).reshape(-1)
    np.testing.assert_array_equal(backend.numpy(y), backend.numpy(x))
    assert x.view(2, 3).mT.shape == (3, 2) and x.reshape((3, 2)).T.shape == (2, 3)
    assert x.broadcast_to((2, 6)).shape == (2, 6)
    y.sum().backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), np.ones(6))


@given(data=st.data())
def test_reshape_flatten(backend, data):
    x = data.draw(tensors(shapes(min_dims=1), noncontiguous=None))
    start = data.draw(st.integers(-x.ndim, x.ndim - 1))
    end = data.draw(st.integers(start % x.ndim, x.ndim - 1))

    def ref(a):
        s, e = start % a.ndim, end % a.ndim
        return a.reshape(a.shape[:s] + (-1,) + a.shape[e + 1 :])

    check_op(
        lambda t: F.flatten(t, start, end),
        [x],
        ref,
        lambda t: torch.flatten(t, start, end),
        second_order=True,
        backend=backend,
    )
    check_op(lambda t: F.reshape(t, -1, 1), [x], lambda a: a.reshape(-1, 1), backend=backend)
    assert F.flatten(backend.tensor(3.0)).shape == (1,)


@given(data=st.data())
def test_expand(backend, data):
    shape = data.draw(shapes(max_side=3))
    x = data.draw(tensors(tuple(1 if data.draw(st.booleans()) else n for n in shape)))
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2))
    target = tuple(lead) + tuple(
        data.draw(st.sampled_from([-1, 3])) if n == 1 else data.draw(st.sampled_from([-1, n]))
        for n in x.shape
    )
    full = tuple(lead) + tuple(o if t == -1 else t for o, t in zip(x.shape, target[len(lead) :]))
    check_op(
        lambda t: F.expand(t, *target),
        [x],
        lambda a: np.broadcast_to(a, full),
        lambda t: t.expand(target),
        second_order=True,
        backend=backend,
    )


@st.composite
def cat_inputs(draw, same_shape=False):
    shape = draw(shapes(min_dims=1, max_side=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    k = draw(st.integers(1, 3))
    out = []
    for _ in range(k):
        s = list(shape)
        if not same_shape:
            s[dim] = draw(st.integers(1, 3))
        out.append(draw(tensors(tuple(s), noncontiguous=None)))
    return out, dim


@given(inputs=cat_inputs())
def test_cat(backend, inputs):
    ts, dim = inputs
    check_op(
        lambda *xs: F.cat(xs, dim),
        ts,
        lambda *a: np.concatenate(a, axis=dim),
        lambda *xs: torch.cat(xs, dim),
        second_order=True,
        backend=backend,
    )


@given(inputs=cat_inputs(same_shape=True), new=st.integers(0, 10))
def test_stack(backend, inputs, new):
    ts, _ = inputs
    dim = new % (ts[0].ndim + 1) - (ts[0].ndim + 1) * (new % 2)  # negative dims too
    check_op(
        lambda *xs: F.stack(xs, dim),
        ts,
        lambda *a: np.stack(a, axis=dim),
        lambda *xs: torch.stack(xs, dim),
        second_order=True,
        backend=backend,
    )


@given(data=st.data())
def test_split_and_chunk_use_only_some_pieces(backend, data):
    x = data.draw(tensors(shapes(min_dims=1, max_side=5)))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    n = x.shape[dim]
    size = data.draw(st.integers(1, n + 1))
    pick = data.draw(st.integers(0, -(-n // size) - 1))
    check_op(
        lambda t: F.split(t, size, dim)[pick] * 2,
        [x],
        lambda a: np.split(a, range(size, n, size), axis=dim)[pick] * 2,
        lambda t: torch.split(t, size, dim)[pick] * 2,
        second_order=True,
        backend=backend,
    )
    chunks = data.draw(st.integers(1, 5))
    pieces = F.chunk(backend.put(x), chunks, dim)
    if torch is not None:
        expected = torch.chunk(torch.tensor(x.data), chunks, dim)
        assert len(pieces) == len(expected)
        for p, e in zip(pieces, expected):
            np.testing.assert_array_equal(backend.numpy(p), e.numpy())
    step = -(-n // chunks)  # ceil: PyTorch's chunk size
    check_op(
        lambda t: F.cat(F.chunk(t, chunks, dim)[::-1], dim),
        [x],
        lambda a: np.concatenate(np.split(a, range(step, n, step), axis=dim)[::-1], axis=dim),
        second_order=True,
        backend=backend,
    )


def test_split_sections_and_unused_pieces_get_zero_gradient(backend):
    x = td.arange(10, device=backend.name).double().reshape(5, 2).requires_grad_()
    a, b, c = F.split(x, [2, 0, 3])
    assert (a.shape, b.shape, c.shape) == ((2, 2), (0, 2), (3, 2))
    (c * 3).sum().backward()
    np.testing.assert_array_equal(backend.numpy(x.grad), [[0, 0]] * 2 + [[3, 3]] * 3)
    a, b = x.split(1, 1)
    np.testing.assert_array_equal(backend.numpy(b)[:, 0], backend.numpy(x)[:, 1])


@given(data=st.data(), value=st.sampled_from([0.0, 1.5, -2.0]))
def test_pad(backend, data, value):
    x = data.draw(tensors(shapes(min_dims=1, max_side=3), noncontiguous=None))
    pairs = data.draw(st.integers(1, x.ndim))
    pad = tuple(data.draw(st.lists(st.integers(0, 2), min_size=2 * pairs, max_size=2 * pairs)))

    def ref(a):
        widths = [(0, 0)] * (a.ndim - pairs) + [
            (pad[2 * i], pad[2 * i + 1]) for i in reversed(range(pairs))
        ]
        return np.pad(a, widths, constant_values=value)

    check_op(
        lambda t: F.pad(t, pad, value),
        [x],
        ref,
        lambda t: torch.nn.functional.pad(t, pad, value=value),
        second_order=True,
        backend=backend,
    )


@given(data=st.data())
def test_flip(backend, data):
    x = data.draw(tensors(noncontiguous=None))
    dims = tuple(
        data.draw(st.lists(st.integers(0, max(x.ndim - 1, 0)), unique=True, max_size=x.ndim))
    )
    check_op(
        lambda t: F.flip(t, dims),
        [x],
        lambda a: np.flip(a, axis=dims),
        lambda t: torch.flip(t, dims),
        second_order=True,
        backend=backend,
    )


@given(data=st.data())
def test_repeat(backend, data):
    x = data.draw(tensors(shapes(max_side=3), noncontiguous=None))
    sizes = tuple(data.draw(st.lists(st.integers(0, 3), min_size=x.ndim, max_size=x.ndim + 2)))
    check_op(
        lambda t: t.repeat(*sizes),
        [x],
        lambda a: np.tile(a, sizes),
        lambda t: t.repeat(*sizes) if sizes else t.clone(),
        second_order=True,
        backend=backend,
    )


@given(data=st.data())
def test_getitem_basic(backend, data):
    x = data.draw(tensors(shapes(min_dims=1, max_side=4), noncontiguous=None))
    index = data.draw(hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True))
    negative = any(
        isinstance(i, slice) and (i.step or 1) < 0
        for i in (index if isinstance(index, tuple) else (index,))
    )
    check_op(
        lambda t: t[index],
        [x],
        lambda a: a[index],
        None if negative else (lambda t: t[index]),
        second_order=True,
        backend=backend,
    )


@given(data=st.data())
def test_getitem_integer_arrays_with_repeats(backend, data):
    x = data.draw(tensors(shapes(min_dims=1, max_side=4)))
    index = data.draw(
        hnp.integer_array_indices(
            x.shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)
        )
    )
    check_op(
        lambda t: t[index],
        [x],
        lambda a: a[index],
        lambda t: t[tuple(torch.as_tensor(i) for i in index)],
        second_order=True,
        backend=backend,
    )


@given(data=st.data())
def test_getitem_bool_mask(backend, data):
    x = data.draw(tensors(shapes(min_dims=1, max_side=4)))
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    check_op(
        lambda t: t[mask],
        [x],
        lambda a: a[mask],
        lambda t: t[torch.as_tensor(mask)],
        second_order=True,
        backend=backend,
    )
    check_op(lambda t: t[backend.tensor(mask)], [x], lambda a: a[mask], backend=backend)


def test_getitem_lists_tensors_mixed_and_repeated_gradients(backend):
    x = td.arange(12, device=backend.name).double().reshape(3, 4).requires_grad_()
    y = x[[0, 0, 2], 1:3]  # a list with a repeat, then a slice
    np.testing.assert_array_equal(backend.numpy(y), backend.numpy(x)[[0, 0, 2], 1:3])
    y.sum().backward()
    expected = np.zeros((3, 4))
    expected[0, 1:3] = 2
    expected[2, 1:3] = 1
    np.testing.assert_array_equal(backend.numpy(x.grad), expected)
    idx = backend.tensor([2, -1, 2])
    check_op(
        lambda t: t[:, idx],
        [x],
        lambda a: a[:, [2, -1, 2]],
        lambda t: t[:, torch.tensor([2, -1, 2])],
        second_order=True,
        backend=backend,
    )
    check_op(
        lambda t: t[..., None, 1], [x], lambda a: a[..., None, 1], second_order=True,
        backend=backend,
    )
    check_op(lambda t: t[[]], [x], lambda a: a[np.array([], dtype=int)], backend=backend)
    check_op(
        lambda t: F.getitem(t, (slice(None, None, -2), 0)),
        [x],
        lambda a: a[::-2, 0],
        second_order=True,
        backend=backend,
    )


@pytest.mark.parametrize(
    "fn",
    [
        lambda t: F.cat([t, t * 2], 1),
        lambda t: F.stack([t, t]),
        lambda t: F.split(t, 1)[1],
        lambda t: F.pad(t, (1, 1), 2.0),
        lambda t: F.flip(t, 0),
        lambda t: t.repeat(2, 2),
        lambda t: t.expand(3, 2, 3),
        lambda t: t[[1, 1], ::-1],
        lambda t: t[t.data > 0],
        lambda t: t.flatten(),
    ],
)
def test_float32_stays_float32(backend, fn):
    x = backend.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]], requires_grad=True)
    y = fn(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_errors_name_the_op_and_shapes():
    a, b = td.zeros(2, 3), td.zeros(2, 4)
    with pytest.raises(
        td.ShapeError,
        match=r"cat: tensor 1 has shape \(2, 4\) but tensor 0 has \(2, 3\) outside dim 0",
    ):
        F.cat([a, b])
    with pytest.raises(td.ShapeError, match=r"cat: tensor 1 has 1 dimensions \(shape \(3,\)\)"):
        F.cat([a, td.zeros(3)])
    with pytest.raises(ValueError, match="cat: expected a non-empty"):
        F.cat([])
    with pytest.raises(td.ShapeError, match=r"stack: tensor 1 has shape \(2, 4\) but tensor 0"):
        F.stack([a, b])
    with pytest.raises(
        td.ShapeError,
        match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4,\)",
    ):
        a.reshape(4)
    with pytest.raises(
        IndexError, match=r"getitem: index 5 is out of bounds .* size 3 \(tensor of shape \(3,\)\)"
    ):
        td.zeros(3)[5]
    with pytest.raises(IndexError, match=r"getitem: .*boolean index did not match"):
        td.zeros(3)[td.tensor([True, False])]
    with pytest.raises(IndexError, match=r"getitem: .*out of bounds"):
        td.zeros(3)[td.tensor([0, 3])]
    with pytest.raises(ValueError, match=r"pad: negative padding is not supported, got \(-1, 0\)"):
        F.pad(td.zeros(2), (-1, 0))
    with pytest.raises(td.ShapeError, match=r"pad: expected an even number of at most 2 values"):
        F.pad(td.zeros(2), (1, 1, 1))
    with pytest.raises(
        td.ShapeError, match=r"split: sections \[1, 1\] must be non-negative and add up to 3"
    ):
        F.split(a, [1, 1], 1)
    with pytest.raises(td.ShapeError, match=r"expand: cannot expand shape \(2, 3\) to \(4, 3\)"):
        a.expand(4, 3)
    with pytest.raises(td.ShapeError, match=r"repeat: 1 sizes \(2,\) are fewer than the 2 dims"):
        a.repeat(2)
    with pytest.raises(ValueError, match="flatten: start_dim 1 comes after end_dim 0"):
        a.flatten(1, 0)
    with pytest.raises(IndexError, match="flip: dim 2 is out of range"):
        a.flip(2)
    with pytest.raises(TypeError, match="item assignment"):
        a[0] = 1.0
