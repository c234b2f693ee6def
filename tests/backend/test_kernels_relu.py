"""ReLU's compiled loops (``numba_relu``) against their NumPy reference (``relu_ref``), bit for
bit (NaN, infinities and signed zeros included), and ``relu`` through either against the
definition."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinydl as td
import tinydl.functional as F
from tinydl.backend import kernels
from tinydl.backend.kernels import relu_ref as R

B = pytest.importorskip("tinydl.backend.kernels.numba_relu", reason="Numba is not importable")

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0]


def float_arrays(dtype):
    shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9)
    values = st.one_of(st.floats(width=32), st.sampled_from(SPECIALS))
    return hnp.arrays(dtype, shapes, elements=values)


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@given(st.sampled_from([np.float32, np.float64]).flatmap(
    lambda dt: st.tuples(float_arrays(dt), float_arrays(dt))))  # fmt: skip
def test_loops_equal_the_reference_bit_for_bit(pair):
    x, g = pair
    g = np.resize(g, x.shape)  # one shape, drawn values
    for name, args in (("relu_forward", (x,)), ("relu_backward", (g, x))):
        expected = getattr(R, name)(*args, out=np.empty_like(x))
        got = getattr(B, name)(*args, out=np.full_like(x, 7))
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(_bits(got), _bits(expected), err_msg=name)


def test_reference_is_the_definition():
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan, np.inf, -np.inf], np.float32)
    g = np.array([5.0, 1.0, -1.0, -4.0, 2.0, np.inf, np.inf], np.float32)
    y = R.relu_forward(x, out=np.empty_like(x))
    np.testing.assert_array_equal(y, [0, 0, 0, 3, np.nan, np.inf, 0])
    assert not np.signbit(y[:3]).any()  # max(-0.0, 0) is +0.0
    dx = R.relu_backward(g, y, out=np.empty_like(g))
    np.testing.assert_array_equal(dx, [0, 0, -0.0, -4, 2, np.inf, np.nan])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_relu_is_the_same_on_both_kernel_variants(dtype, layout):
    x = np.random.default_rng(0).standard_normal((4, 8, 64, 64)).astype(dtype)  # >= _LOOP_MIN
    x[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    if layout == "strided":
        x = x[:, :, ::2]
    grads = []
    for variant in ("numpy", "numba"):
        with kernels.use_kernels(variant):
            t = td.tensor(x, requires_grad=True)
            y = F.relu(t)
            assert y.dtype == dtype
            y.backward(td.tensor(np.linspace(-3, 3, y.numel(), dtype=dtype).reshape(y.shape)))
            grads.append((y.detach().numpy(), t.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_array_equal(_bits(np.ascontiguousarray(a)), _bits(b))


def test_relu_of_an_integer_tensor_takes_the_reference():
    x = td.tensor(np.array([-3, 0, 5], np.int64))
    np.testing.assert_array_equal(F.relu(x).numpy(), [0, 0, 5])


@pytest.mark.parametrize("shape, loop", [((4, 8, 64, 64), True), ((128, 256), False)])
def test_the_loop_runs_on_large_float_arrays_only(monkeypatch, shape, loop):
    calls = []
    for name in ("relu_forward", "relu_backward"):
        kernel = getattr(B, name)
        monkeypatch.setattr(B, name, lambda *a, _k=kernel, _n=name, **kw: calls.append(_n)
                            or _k(*a, **kw))  # fmt: skip
    with kernels.use_kernels("numba"):
        t = td.tensor(np.ones(shape, np.float32), requires_grad=True)
        F.relu(t).backward(td.tensor(np.ones(shape, np.float32)))
    assert calls == (["relu_forward", "relu_backward"] if loop else [])


@given(st.sampled_from([np.float32, np.float64]).flatmap(
    lambda dt: st.tuples(float_arrays(dt), float_arrays(dt))))  # fmt: skip
def test_add_relu_loop_equals_the_reference_bit_for_bit(pair):
    a, b = pair
    b = np.resize(b, a.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, float32 overflow
        expected = R.add_relu_forward(a, b, out=np.empty_like(a))
    got = B.add_relu_forward(a, b, out=np.full_like(a, 7))
    np.testing.assert_array_equal(_bits(got), _bits(expected))


def test_add_relu_reference_is_the_definition():
    a = np.array([-2.0, 1.0, -0.0, np.nan, np.inf, np.inf], np.float32)
    b = np.array([1.0, 1.0, 0.0, 1.0, -1.0, -np.inf], np.float32)
    with np.errstate(invalid="ignore"):
        y = R.add_relu_forward(a, b, out=np.empty_like(a))
    np.testing.assert_array_equal(y, [0, 2, 0, np.nan, np.inf, np.nan])
    assert not np.signbit(y[[0, 2]]).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_add_relu_is_relu_of_the_sum_on_both_kernel_variants(dtype, layout):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((4, 8, 64, 64)).astype(dtype) for _ in range(2))  # >= _LOOP_MIN
    a[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    if layout == "strided":
        a, b = a[:, :, ::2], b[:, :, ::2]
    g = np.linspace(-3, 3, a.size, dtype=dtype).reshape(a.shape)
    results = []
    for variant, fn in (("numpy", F.add_relu), ("numba", F.add_relu),
                        ("numba", lambda x, y: F.relu(x + y))):  # fmt: skip
        with kernels.use_kernels(variant):
            ta, tb = td.tensor(a, requires_grad=True), td.tensor(b, requires_grad=True)
            y = fn(ta, tb)
            assert y.dtype == dtype
            y.backward(td.tensor(g))
            results.append([np.ascontiguousarray(r) for r in
                            (y.detach().numpy(), ta.grad.numpy(), tb.grad.numpy())])  # fmt: skip
    for got in results[1:]:
        for r, e in zip(got, results[0]):
            np.testing.assert_array_equal(_bits(r), _bits(e))


def test_add_relu_of_broadcast_operands_reduces_the_gradient():
    a = td.tensor(np.array([[-1.0, 2.0], [3.0, -4.0]]), requires_grad=True)
    b = td.tensor(np.array([0.5, 1.0]), requires_grad=True)
    y = F.add_relu(a, b)
    np.testing.assert_array_equal(y.detach().numpy(), [[0, 3], [3.5, 0]])
    y.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(b.grad.numpy(), [1, 1])


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5),
                  elements=st.floats(-3, 3)), st.integers(0, 2**32 - 1))  # fmt: skip
def test_add_relu_matches_pytorch(a, seed):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no reference")
    b = np.random.default_rng(seed).uniform(-3, 3, a.shape)
    g = np.random.default_rng(seed + 1).uniform(-1, 1, a.shape)
    ta, tb = td.tensor(a, requires_grad=True), td.tensor(b, requires_grad=True)
    F.add_relu(ta, tb).backward(td.tensor(g))
    pa, pb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    y = torch.relu(pa + pb)
    y.backward(torch.tensor(g))
    np.testing.assert_array_equal(F.add_relu(td.tensor(a), td.tensor(b)).numpy(), y.detach())
    np.testing.assert_array_equal(ta.grad.numpy(), pa.grad)
    np.testing.assert_array_equal(tb.grad.numpy(), pb.grad)
