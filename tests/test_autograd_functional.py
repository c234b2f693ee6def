"""td.autograd.functional: every transform against central differences (float64, hypothesis
inputs) and against torch.autograd.functional; result structures; create_graph; errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
from tinydl.autograd_functional import hessian, hvp, jacobian, jvp, vhp, vjp
from tinydl.testing import assert_close, shapes, tensors

# The functions work on tinydl and torch tensors alike (methods and operators only).


def one(x):  # one input, one output
    return x.tanh() * x.sum()


def two(x, y):  # two inputs, two outputs
    return x * y.sin(), (x * x).sum() * y.exp()


def scalar(x, y):  # every block of its Hessian is non-zero
    return (x.tanh() * y).sum() + (x * x * y.sin()).sum()


def scalar1(x):
    return x.sin().sum() * (x * x).sum()


# -- central differences ---------------------------------------------------------------------


def _numeric(fn, arrays, eps):
    """``[i][j]``: d output i / d input j of ``fn`` (arrays -> list of arrays), shaped
    ``out_i.shape + in_j.shape``, by central differences."""
    outs = fn(*arrays)
    jac = [[np.zeros(o.shape + a.shape) for a in arrays] for o in outs]
    for j, a in enumerate(arrays):
        for idx in np.ndindex(a.shape):
            plus, minus = [b.copy() for b in arrays], [b.copy() for b in arrays]
            plus[j][idx] += eps
            minus[j][idx] -= eps
            for i, (p, m) in enumerate(zip(fn(*plus), fn(*minus))):
                jac[i][j][(...,) + idx] = (p - m) / (2 * eps)
    return jac


def _on_arrays(func):
    def fn(*arrays):
        with td.no_grad():
            out = func(*[td.tensor(a) for a in arrays])
        return [o.detach().numpy() for o in (out if isinstance(out, tuple) else (out,))]

    return fn


def _fd_jacobian(func, inputs, eps=1e-6):
    return _numeric(_on_arrays(func), [t.detach().numpy().copy() for t in inputs], eps)


def _fd_hessian(func, inputs, eps=1e-4):
    """The Jacobian (by differences) of the gradient (by differences): no autograd in it."""
    f = _on_arrays(func)
    gradient = lambda *arrays: _numeric(f, list(arrays), eps)[0]  # noqa: E731
    return _numeric(gradient, [t.detach().numpy().copy() for t in inputs], eps)


def _pair(shape):
    """Two float64 tensors of one hypothesis shape (small: the differences cost n^2 calls)."""
    return shape.flatmap(lambda s: st.tuples(tensors(shape=s), tensors(shape=s)))


SMALL = shapes(min_dims=0, max_dims=2, max_side=3)
TINY = shapes(min_dims=0, max_dims=2, max_side=2)


@given(_pair(SMALL))
def test_jacobian_matches_differences(xy):
    (jx,) = [jacobian(one, xy[0])]
    assert_close(jx, _fd_jacobian(one, xy[:1])[0][0], rtol=1e-5, atol=1e-7)
    jac, fd = jacobian(two, xy), _fd_jacobian(two, xy)
    for i in range(2):
        for j in range(2):
            assert jac[i][j].shape == xy[i].shape + xy[j].shape
            assert_close(jac[i][j], fd[i][j], rtol=1e-5, atol=1e-7)


@given(_pair(SMALL), st.integers(0, 2**32 - 1))
def test_vjp_and_jvp_match_differences(xy, seed):
    rng = np.random.default_rng(seed)
    fd = _fd_jacobian(two, xy)
    outs, v_out = two(*xy), None
    v_out = tuple(td.tensor(rng.standard_normal(o.shape)) for o in outs)
    v_in = tuple(td.tensor(rng.standard_normal(x.shape)) for x in xy)
    value, back = vjp(two, xy, v_out)
    for j in range(2):  # (v^T J)_j = sum_i v_i . J_ij over the output axes
        want = sum(np.tensordot(v_out[i].detach().numpy(), fd[i][j], v_out[i].ndim) for i in range(2))
        assert_close(back[j], want, rtol=1e-5, atol=1e-7)
    value2, fwd = jvp(two, xy, v_in)
    for i in range(2):  # (J v)_i = sum_j J_ij v_j over the input axes
        want = sum(np.tensordot(fd[i][j], v_in[j].detach().numpy(), v_in[j].ndim) for j in range(2))
        assert_close(fwd[i], want, rtol=1e-5, atol=1e-7)
        assert_close(value[i], outs[i].detach().numpy()) and assert_close(value2[i], outs[i].detach().numpy())


@given(_pair(TINY), st.integers(0, 2**32 - 1))
def test_hessian_hvp_vhp_match_differences(xy, seed):
    rng = np.random.default_rng(seed)
    fd = _fd_hessian(scalar, xy)
    hess = hessian(scalar, xy)
    for i in range(2):
        for j in range(2):
            assert hess[i][j].shape == xy[i].shape + xy[j].shape
            assert_close(hess[i][j], fd[i][j], rtol=1e-4, atol=1e-6)
    v = tuple(td.tensor(rng.standard_normal(x.shape)) for x in xy)
    for transform in (hvp, vhp):
        value, prod = transform(scalar, xy, v)
        assert_close(value, scalar(*xy).detach().numpy())
        for i in range(2):
            want = sum(np.tensordot(fd[i][j], v[j].detach().numpy(), v[j].ndim) for j in range(2))
            assert_close(prod[i], want, rtol=1e-4, atol=1e-6)


# -- against PyTorch -------------------------------------------------------------------------


def _same(ours, theirs):
    """Equal values in the same nesting of tuples."""
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), (type(ours), len(theirs))
        for a, b in zip(ours, theirs):
            _same(a, b)
    else:
        assert isinstance(ours, td.Tensor) and ours.shape == tuple(theirs.shape)
        assert_close(ours, theirs.detach().detach().numpy(), rtol=1e-10, atol=1e-12)


@given(_pair(SMALL), st.integers(0, 2**32 - 1))
def test_every_transform_matches_torch(xy, seed):
    torch = pytest.importorskip("torch")
    taf = torch.autograd.functional
    rng = np.random.default_rng(seed)
    tt = lambda ts: tuple(torch.from_numpy(t.detach().numpy().copy()) for t in ts)  # noqa: E731
    x, y = xy
    vo = tuple(td.tensor(rng.standard_normal(o.shape)) for o in two(x, y))
    vi = tuple(td.tensor(rng.standard_normal(t.shape)) for t in xy)
    cases = [  # (ours, theirs, args of ours as tinydl tensors)
        (jacobian, taf.jacobian, (one, x)),
        (jacobian, taf.jacobian, (two, xy)),
        (jacobian, taf.jacobian, (lambda a, b: one(a) * b, xy)),  # tuple in, tensor out
        (jacobian, taf.jacobian, (lambda a: two(a, a), x)),  # tensor in, tuple out
        (hessian, taf.hessian, (scalar, xy)),
        (hessian, taf.hessian, (scalar1, x)),
        (vjp, taf.vjp, (two, xy, vo)),
        (vjp, taf.vjp, (one, x, vi[0])),
        (jvp, taf.jvp, (two, xy, vi)),
        (jvp, taf.jvp, (one, x, vi[0])),
        (hvp, taf.hvp, (scalar, xy, vi)),
        (hvp, taf.hvp, (scalar1, x, vi[0])),
        (vhp, taf.vhp, (scalar, xy, vi)),
    ]
    for ours, theirs, (func, inputs, *v) in cases:
        conv = lambda a: tt(a) if isinstance(a, tuple) else tt((a,))[0]  # noqa: E731
        _same(ours(func, inputs, *v), theirs(func, conv(inputs), *[conv(a) for a in v]))


def test_strict_and_zeros_agree_with_torch():
    torch = pytest.importorskip("torch")
    taf = torch.autograd.functional
    x = td.tensor([1.0, 2.0], dtype=td.float64)
    y = td.tensor([3.0], dtype=td.float64)
    tx, ty = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    _same(jacobian(lambda a, b: a * 2, (x, y)), taf.jacobian(lambda a, b: a * 2, (tx, ty)))
    _same(vjp(lambda a, b: a * 2, (x, y), x)[1], taf.vjp(lambda a, b: a * 2, (tx, ty), tx)[1])
    with pytest.raises(RuntimeError):
        taf.jacobian(lambda a, b: a * 2, (tx, ty), strict=True)
    with pytest.raises(td.BackwardError, match="jacobian: output 0 does not depend on input 1"):
        jacobian(lambda a, b: a * 2, (x, y), strict=True)


# -- structures, create_graph, grad mode -----------------------------------------------------


def test_structures_follow_torch_nesting():
    x, y = td.randn(2, dtype=td.float64), td.randn(3, dtype=td.float64)
    assert isinstance(jacobian(one, x), td.Tensor) and jacobian(one, x).shape == (2, 2)
    j = jacobian(lambda a: (a, a.sum()), x)
    assert isinstance(j, tuple) and [t.shape for t in j] == [(2, 2), (2,)]
    j = jacobian(lambda a, b: a.sum() * b, (x, y))
    assert isinstance(j, tuple) and [t.shape for t in j] == [(3, 2), (3, 3)]
    j = jacobian(lambda a, b: (a, b.sum()), (x, y))
    assert [[t.shape for t in row] for row in j] == [[(2, 2), (2, 3)], [(2,), (3,)]]
    h = hessian(lambda a, b: (a * a).sum() * b.sum(), (x, y))
    assert [[t.shape for t in row] for row in h] == [[(2, 2), (2, 3)], [(3, 2), (3, 3)]]
    out, prod = vjp(lambda a: a * 2, [x], x)  # a list counts as a tuple
    assert isinstance(prod, tuple) and len(prod) == 1
    out, prod = jvp(lambda a: (a.sum(),) * 2, td.tensor(1.5, dtype=td.float64))  # v=None
    assert isinstance(out, tuple) and len(prod) == 2 and float(prod[0].item()) == 1.0


def test_results_are_detached_without_create_graph():
    x = td.tensor([1.0, 2.0], dtype=td.float64, requires_grad=True)
    for res in (jacobian(one, x), hessian(scalar1, x), *vjp(one, x, x), *jvp(one, x, x),
                *hvp(scalar1, x, x), *vhp(scalar1, x, x)):
        assert not res.requires_grad
    assert x.grad is None


def test_create_graph_results_are_differentiable_again():
    x = td.tensor([0.5, -1.5], dtype=td.float64, requires_grad=True)
    v = td.tensor([1.0, 2.0], dtype=td.float64)
    xv, vv = x.detach().numpy(), v.detach().numpy()
    # vjp and jvp of x^3 with v: 3 x^2 v, whose gradient (summed) is 6 x v
    for transform in (vjp, jvp):
        _, prod = transform(lambda a: a ** 3, x, v, create_graph=True)
        (g,) = td.grad(prod.sum(), x)
        assert_close(g, 6 * xv * vv, rtol=1e-12)
    # Hessian of sum(x^4) is diag(12 x^2); the gradient of its trace is 24 x
    (g,) = td.grad(hessian(lambda a: (a ** 4).sum(), x, create_graph=True).sum(), x)
    assert_close(g, 24 * xv, rtol=1e-12)
    for transform in (hvp, vhp):  # H v = 12 x^2 v; gradient of its sum: 24 x v
        _, prod = transform(lambda a: (a ** 4).sum(), x, v, create_graph=True)
        (g,) = td.grad(prod.sum(), x)
        assert_close(g, 24 * xv * vv, rtol=1e-12)
    (g,) = td.grad(jacobian(lambda a: a ** 3, x, create_graph=True).sum(), x)
    assert_close(g, 6 * xv, rtol=1e-12)


def test_create_graph_reaches_v_when_it_requires_grad():
    x = td.tensor([0.5, -1.5], dtype=td.float64)
    v = td.tensor([1.0, 2.0], dtype=td.float64, requires_grad=True)
    _, prod = vjp(lambda a: a ** 3, x, v, create_graph=True)
    (g,) = td.grad(prod.sum(), v)
    assert_close(g, 3 * x.detach().numpy() ** 2, rtol=1e-12)


def test_transforms_work_under_no_grad():
    x = td.tensor([1.0, 2.0], dtype=td.float64)
    with td.no_grad():
        assert_close(jacobian(lambda a: a * a, x), np.diag([2.0, 4.0]))
        assert_close(hvp(lambda a: (a ** 3).sum(), x, x)[1], 6 * x.detach().numpy() ** 2)


def test_reachable_as_td_autograd_functional():
    from tinydl import autograd_functional

    assert td.autograd.functional is autograd_functional
    for name in autograd_functional.__all__:
        assert getattr(td.autograd.functional, name) is getattr(autograd_functional, name)


# -- errors ----------------------------------------------------------------------------------

X = td.tensor([1.0, 2.0], dtype=td.float64)


@pytest.mark.parametrize("transform", [jacobian, hessian, vjp, jvp, hvp, vhp])
def test_non_tensor_inputs_and_outputs_are_named(transform):
    name = transform.__name__
    with pytest.raises(TypeError, match=rf"{name}: inputs must be a Tensor .* got list \(index 1\)"):
        transform(scalar, (X, [1.0, 2.0]))
    with pytest.raises(TypeError, match=rf"{name}: inputs must be a Tensor .* got ndarray"):
        transform(scalar1, np.ones(2))
    with pytest.raises(TypeError, match=rf"{name}: the output of func must be a Tensor .* float"):
        transform(lambda a: 1.0, X, *([X] if name not in ("jacobian", "hessian") else []))


@pytest.mark.parametrize("transform, ref", [(vjp, "outputs"), (jvp, "inputs"), (hvp, "inputs"),
                                            (vhp, "inputs")])
def test_wrong_v_is_named(transform, ref):
    name = transform.__name__
    func = scalar1 if name in ("hvp", "vhp") else (lambda a: a * a)
    with pytest.raises(td.ShapeError, match=rf"{name}: v\[0\] has shape \(3,\) but {ref} 0 "
                                            r"has \(2,\)"):
        transform(func, X, td.ones(3, dtype=td.float64))
    with pytest.raises(td.ShapeError, match=rf"{name}: v has 2 tensors for 1 {ref}"):
        transform(scalar1, X, (X, X))
    with pytest.raises(TypeError, match=rf"{name}: v must be a Tensor .* got ndarray"):
        transform(scalar1, X, np.ones(2))


def test_v_none_only_for_one_element():
    with pytest.raises(td.ShapeError, match=r"vjp: v can be None only when the outputs .*\(2,\)"):
        vjp(lambda a: a * 2, X)
    with pytest.raises(td.ShapeError, match=r"jvp: v can be None only when the inputs .*\(2,\)"):
        jvp(lambda a: a * 2, X)
    with pytest.raises(td.ShapeError, match=r"hvp: v can be None only when the inputs"):
        hvp(scalar1, X)
    x1 = td.tensor([2.0], dtype=td.float64)
    assert_close(hvp(lambda a: (a ** 3).sum(), x1)[1], [12.0])
    assert_close(vjp(lambda a: (a ** 3).sum(), x1)[1], [12.0])


def test_scalar_functions_are_checked():
    with pytest.raises(td.ShapeError, match=r"hessian: func must return one element, got shape "
                                            r"\(2,\)"):
        hessian(lambda a: a * a, X)
    with pytest.raises(TypeError, match="hvp: func must return a single Tensor, got a tuple of 2"):
        hvp(lambda a: (a.sum(), a.sum()), X, X)


def test_integer_inputs_are_refused():
    with pytest.raises(td.DTypeError, match="jacobian: input 0 has dtype int64"):
        jacobian(lambda a: a * 2, td.tensor([1, 2]))


def test_strict_raises_where_an_output_ignores_an_input():
    y = td.tensor([3.0], dtype=td.float64)
    ignore_y = lambda a, b: a * 2  # noqa: E731
    assert_close(jacobian(ignore_y, (X, y))[1], np.zeros((2, 1)))  # not strict: zeros
    with pytest.raises(td.BackwardError, match="vjp: the function's output does not depend on "
                                               "input 1; strict=True forbids it"):
        vjp(ignore_y, (X, y), X, strict=True)
    with pytest.raises(td.BackwardError, match="output 0 of the function does not require grad"):
        jvp(lambda a: td.ones(2, dtype=td.float64), X, X, strict=True)
    with pytest.raises(td.BackwardError, match="hessian: the derivative with respect to input 0 "
                                               "is constant"):
        hessian(lambda a: (a * 2).sum(), X, strict=True)
    # linear in x: the Hessian is zero without strict
    assert_close(hessian(lambda a: (a * 2).sum(), X), np.zeros((2, 2)))
    assert_close(hvp(lambda a: (a * 2).sum(), X, X)[1], np.zeros(2))


def test_float32_stays_float32_and_empty_outputs_work():
    x = td.randn(3)
    assert jacobian(lambda a: a.tanh(), x).dtype == td.float32
    assert hvp(lambda a: (a ** 3).sum(), x, x)[1].dtype == td.float32
    assert jvp(lambda a: a * 2, x, x)[1].dtype == td.float32
    assert jacobian(lambda a: a[:0], x).shape == (0, 3)  # torch's stack refuses this case
