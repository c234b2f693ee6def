"""One test factory over the op table (op_table.py), and the meta-tests that keep the table whole.

For every entry and every hypothesis example (``dev`` 10, ``ci`` 50, ``thorough`` 1000):

* forward against the NumPy/SciPy reference, float64, rtol 1e-7;
* gradient against float64 central differences of the reference (eps 1e-6; rtol 1e-5, or
  1e-3 for piecewise ops): every element for inputs of at most 64 elements, a directional
  derivative ``v^T J u`` (random ``u``, ``v``) above that;
* after backward: inputs, fixed arguments and the upstream gradient unchanged; no gradient
  shares memory with another, with an input or with the upstream gradient; each gradient has
  its input's shape and dtype; backward is linear in the upstream gradient; a rerun is
  bit-identical;
* non-contiguous inputs and upstream gradient give the same results;
* float32 gives the float64 results within float32 tolerances;
* double backward (where the entry says so): the second derivative against central
  differences of the first.

Every entry runs on each device (the ``backend`` fixture): the op computes on the device, the
references and central differences on the host.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.devices import CPU
from tests.hardening import figures
from tests.hardening.op_strategies import Case, Op
from tests.hardening.op_table import COVERED, ENTRIES, NOT_DIFFERENTIABLE
from tinydl.backend import is_device_array, to_numpy

EPS = 1e-6
FULL_JACOBIAN_LIMIT = 64


def public_ops() -> set[str]:
    """The public ops of tinydl.functional: its ``__all__`` (when it has one) and the ``__all__``
    of every public submodule, as far as ``F`` itself exposes them."""
    names = set(getattr(F, "__all__", ()))
    for info in pkgutil.iter_modules(F.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{F.__name__}.{info.name}")
            names |= set(getattr(module, "__all__", ()))
    return {n for n in names if callable(getattr(F, n, None))}


def uncovered() -> set[str]:
    return public_ops() - COVERED - set(NOT_DIFFERENTIABLE)


# ----------------------------------------------------------------------------- helpers


def _scale(*arrays) -> float:
    return 1.0 + max((float(np.abs(a).max()) for a in arrays if np.size(a)), default=0.0)


def _close(got, want, rtol, atol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    excess = np.abs(got - want) - (atol + rtol * np.abs(want))
    bad = ~(excess <= 0)  # NaN counts as bad
    if bad.any():
        worst = np.where(bad, np.nan_to_num(excess, nan=np.inf), -np.inf)
        i = np.unravel_index(np.argmax(worst), bad.shape) if bad.ndim else ()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ; worst at {i}: got "
            f"{got[i]!r}, expected {want[i]!r} (rtol {rtol}, atol {atol:.3g})"
        )


def _bits(a) -> bytes:
    return np.ascontiguousarray(to_numpy(a)).tobytes()


def _snapshot(obj):
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and _bits(a) == _bits(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _placed(obj, convert):
    """``obj`` (fixed arguments: arrays, maybe in dicts, lists and tuples) with every array
    replaced by ``convert(array)``."""
    if isinstance(obj, dict):
        return {k: _placed(v, convert) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_placed(v, convert) for v in obj)
    return convert(obj) if isinstance(obj, np.ndarray) or is_device_array(obj) else obj


def _on(b, obj):
    """Fixed arguments with their arrays on ``b``'s device (the same objects on the CPU)."""
    return obj if b is CPU else _placed(obj, b.array)


def _host(obj):
    return _placed(obj, to_numpy)


def _noncontiguous(a, xp=np):
    """The same values in every other slot of a NaN-filled buffer."""
    if a.size <= 1:
        return a.copy()
    buf = xp.full(a.shape + (2,), np.nan, a.dtype)
    buf[..., 0] = a
    view = buf[..., 0]
    assert not view.flags.c_contiguous
    return view


def _place(b, a, noncontiguous: bool):
    """A host array on ``b``'s device, optionally in a non-contiguous layout."""
    a = np.asarray(a) if b is CPU else b.array(a)
    return _noncontiguous(a, b.xp) if noncontiguous else a


def forward_backward(op: Op, arrays, kw, upstream, b=CPU, noncontiguous=False):
    """Forward and backward on fresh leaves over ``arrays`` (host arrays, placed on ``b``'s
    device; ``kw`` is placed already); checks the invariants and returns the output and the
    gradients as host arrays."""
    xp = b.xp
    arrays = [_place(b, a, noncontiguous) for a in arrays]
    upstream = _place(b, upstream, noncontiguous)
    before = [_bits(a) for a in arrays]
    up_before = _bits(upstream)
    xs = [td.Tensor(a, requires_grad=True) for a in arrays]
    out = op.fn(*xs, **kw)
    assert isinstance(out, td.Tensor), f"{op.id} returned a {type(out).__name__}"
    assert out.dtype == arrays[0].dtype, f"{op.id}: output {out.dtype}, input {arrays[0].dtype}"
    assert out.device == b.device, f"{op.id}: output on {out.device}, input on {b.name}"
    g = td.Tensor(upstream)
    out.backward(g)
    assert _bits(g.data) == up_before, f"{op.id}: backward changed the upstream gradient"
    grads = []
    for i, (x, a, bits) in enumerate(zip(xs, arrays, before)):
        assert _bits(a) == bits and x.data is a, f"{op.id}: input {i} was modified"
        assert x.grad is not None, f"{op.id}: input {i} got no gradient"
        gi = x.grad.data
        assert gi.shape == a.shape and gi.dtype == a.dtype, (
            f"{op.id}: gradient {i} is {gi.dtype} {gi.shape}, input {a.dtype} {a.shape}"
        )
        assert x.grad.device == b.device, f"{op.id}: gradient {i} on {x.grad.device}"
        for j, other in enumerate(arrays):
            assert not xp.shares_memory(gi, other), f"{op.id}: gradient {i} aliases input {j}"
        assert not xp.shares_memory(gi, upstream), f"{op.id}: gradient {i} aliases upstream"
        for j, gj in enumerate(grads):
            assert not xp.shares_memory(gi, gj), f"{op.id}: gradients {j} and {i} alias"
        grads.append(gi)
    return to_numpy(out.data).copy(), [to_numpy(gi).copy() for gi in grads]


def _phi(op, arrays, kw, upstream) -> float:
    return float((upstream * op.ref(*arrays, **kw)).sum())


def _shifted(arrays, directions, step):
    return [np.asarray(a + step * d) for a, d in zip(arrays, directions)]


def check_gradient(op, arrays, kw, upstream, grads, want, rng):
    """Analytic gradients against central differences of the float64 reference."""
    rtol = 1e-3 if op.kinks else 1e-5
    atol = 1e-8 * (1 + float(np.abs(upstream * want).sum()))
    if sum(a.size for a in arrays) <= FULL_JACOBIAN_LIMIT:
        for i, a in enumerate(arrays):
            numeric = np.zeros(a.shape)
            for j in np.ndindex(a.shape):
                plus = [b.copy() for b in arrays]
                minus = [b.copy() for b in arrays]
                plus[i][j] += EPS
                minus[i][j] -= EPS
                numeric[j] = (_phi(op, plus, kw, upstream) - _phi(op, minus, kw, upstream)) / (
                    2 * EPS
                )
            _close(grads[i], numeric, rtol, atol, f"{op.id}: gradient {i} vs central differences")
        return
    us = [rng.standard_normal(a.shape) for a in arrays]
    numeric = (
        _phi(op, _shifted(arrays, us, EPS), kw, upstream)
        - _phi(op, _shifted(arrays, us, -EPS), kw, upstream)
    ) / (2 * EPS)
    terms = [float((g * u).sum()) for g, u in zip(grads, us)]
    size = sum(float(np.abs(g * u).sum()) for g, u in zip(grads, us))
    assert abs(sum(terms) - numeric) <= atol + rtol * size, (
        f"{op.id}: directional derivative v^T J u = {sum(terms)!r}, central differences {numeric!r}"
    )


def check_double_backward(op, arrays, kw, upstream, grads, rng, b=CPU):
    """d/dx <w, grad(x)> from a second backward against central differences of the first."""
    xs = [b.tensor(a, requires_grad=True) for a in arrays]
    out = op.fn(*xs, **kw)
    first = td.grad(out, xs, b.tensor(upstream), create_graph=True, allow_unused=True)
    for i, (f, g) in enumerate(zip(first, grads)):
        got = np.zeros_like(g) if f is None else b.numpy(f)
        _close(got, g, 1e-12, 1e-14 * _scale(g), f"{op.id}: create_graph gradient {i}")
    ws = [rng.standard_normal(a.shape) for a in arrays]
    live = [
        (f * b.tensor(w)).sum() for f, w in zip(first, ws) if f is not None and f.requires_grad
    ]
    second = [None] * len(xs)
    if live:
        total = live[0]
        for t in live[1:]:
            total = total + t
        second = td.grad(total, xs, allow_unused=True)
    second = [np.zeros(a.shape) if s is None else b.numpy(s) for s, a in zip(second, arrays)]
    us = [rng.standard_normal(a.shape) for a in arrays]

    def h(arrs):
        _, gs = forward_backward(op, arrs, kw, upstream, b)
        return sum(float((w * g).sum()) for w, g in zip(ws, gs))

    numeric = (h(_shifted(arrays, us, EPS)) - h(_shifted(arrays, us, -EPS))) / (2 * EPS)
    analytic = sum(float((s * u).sum()) for s, u in zip(second, us))
    size = sum(float(np.abs(s * u).sum()) for s, u in zip(second, us))
    atol = 1e-7 * (1 + sum(float(np.abs(w * g).sum()) for w, g in zip(ws, grads)))
    rtol = 1e-3 if op.kinks else 1e-5
    assert abs(analytic - numeric) <= atol + rtol * size, (
        f"{op.id}: second derivative u^T H w = {analytic!r}, central differences of the "
        f"gradient {numeric!r}"
    )


def _check_rerun(b, got, want, what: str):
    if b is CPU:
        assert _bits(got) == _bits(want), f"{what} differs in its bits"
    else:  # NOTE: a GPU's atomic adds (scatter-add backwards) sum in no fixed order
        _close(got, want, 1e-12, 1e-14 * _scale(want), what)


def check_case(op: Op, case: Case, rng: np.random.Generator, b=CPU):
    """Every check on one case, with the op computing on ``b``'s device."""
    if b is not CPU and op.device_ref is not None:
        op = dataclasses.replace(op, ref=op.device_ref(b))
    arrays = [np.array(a, np.float64) for a in case.arrays]
    kw = _on(b, case.kw)
    kw_before = _snapshot(_host(kw))
    want = np.asarray(op.ref(*arrays, **case.kw), np.float64)
    upstream = rng.standard_normal(want.shape).astype(np.float32).astype(np.float64)

    # float64: forward, invariants, gradient
    out, grads = forward_backward(op, arrays, kw, upstream, b)
    _close(out, want, 1e-7, 1e-10 * _scale(want), f"{op.id}: forward vs reference")
    check_gradient(op, arrays, case.kw, upstream, grads, want, rng)

    # a rerun gives the same bits
    out2, grads2 = forward_backward(op, [a.copy() for a in arrays], kw, upstream.copy(), b)
    _check_rerun(b, out2, out, f"{op.id}: a second forward")
    for i, (g, g2) in enumerate(zip(grads, grads2)):
        _check_rerun(b, g2, g, f"{op.id}: gradient {i} of a second backward")

    # backward is linear in the upstream gradient
    other = rng.standard_normal(want.shape)
    _, grads_other = forward_backward(op, arrays, kw, other, b)
    _, grads_mix = forward_backward(op, arrays, kw, 2.0 * upstream - 3.0 * other, b)
    for i, (g, go, gm) in enumerate(zip(grads, grads_other, grads_mix)):
        expected = 2.0 * g - 3.0 * go
        _close(gm, expected, 1e-9, 1e-12 * _scale(g, go), f"{op.id}: linearity of gradient {i}")

    # non-contiguous inputs and upstream gradient
    out_nc, grads_nc = forward_backward(op, arrays, kw, upstream, b, noncontiguous=True)
    _close(out_nc, out, 1e-12, 1e-14 * _scale(out), f"{op.id}: non-contiguous forward")
    for i, (g, gn) in enumerate(zip(grads, grads_nc)):
        _close(gn, g, 1e-12, 1e-14 * _scale(g), f"{op.id}: non-contiguous gradient {i}")

    # float32
    out32, grads32 = forward_backward(
        op, [a.astype(np.float32) for a in arrays], kw, upstream.astype(np.float32), b
    )
    rtol, atol = op.f32
    _close(out32, want, rtol, atol * _scale(want), f"{op.id}: float32 forward vs reference")
    rtol, atol = op.f32_grad
    for i, (g, g32) in enumerate(zip(grads, grads32)):
        _close(g32, g, rtol, atol * _scale(g), f"{op.id}: float32 gradient {i} vs float64")

    if op.double_backward:
        check_double_backward(op, arrays, kw, upstream, grads, rng, b)
    assert _same(_host(kw), kw_before), f"{op.id}: the op modified one of its fixed arguments"


# ----------------------------------------------------------------------------- the factory


@pytest.mark.parametrize("op", ENTRIES, ids=[op.id for op in ENTRIES])
@figures.profile_settings(figures.OP_TABLE_EXAMPLES)
@given(data=st.data())
def test_op(op, backend, data):
    case = data.draw(op.case, label="case")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    figures.RAN["op table"] += 1
    check_case(op, case, np.random.default_rng(seed), backend)


# ----------------------------------------------------------------------------- meta-tests


def test_every_differentiable_public_op_has_an_entry():
    missing = uncovered()
    assert not missing, (
        f"tinydl.functional ops without an op-table entry: {sorted(missing)}; add one to "
        "tests/hardening/op_table.py (or to NOT_DIFFERENTIABLE with the reason)"
    )


def test_entries_and_exclusions_name_public_ops():
    public = public_ops()
    assert len(public) > 50, f"found only {len(public)} public ops: is __all__ missing?"
    assert not COVERED - public, f"entries for unknown ops: {sorted(COVERED - public)}"
    assert set(NOT_DIFFERENTIABLE) <= public
    assert not COVERED & set(NOT_DIFFERENTIABLE)


def test_the_meta_test_notices_a_new_op(monkeypatch):
    module = importlib.import_module("tinydl.functional.elementwise")
    monkeypatch.setattr(F, "frobnicate", lambda x: x, raising=False)
    monkeypatch.setattr(module, "__all__", [*module.__all__, "frobnicate"])
    assert uncovered() == {"frobnicate"}


def test_excluded_ops_really_have_no_gradient():
    x = td.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    for name in ("argmax", "argmin"):
        for result in (getattr(F, name)(x), getattr(F, name)(x, 1)):
            assert result.dtype == np.int64 and not result.requires_grad
    encoded = F.one_hot(td.tensor(np.array([0, 2])), 3)
    assert encoded.dtype == np.int64 and not encoded.requires_grad


def test_the_device_reference_of_dropout_is_numpys_on_the_cpu():
    (op,) = [op for op in ENTRIES if op.name == "dropout"]
    x = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    for p in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(op.device_ref(CPU)(x, p, 7), op.ref(x, p, 7))


# ----------------------------------------------------------------------------- the checks fail


class _Scaled(td.Function):
    """exp with a configurable flaw in its backward."""

    flaw = None

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        y = np.exp(x)
        if _Scaled.flaw == "mutate":
            x += 0.0 * x + 1e-3
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if _Scaled.flaw == "gradient":
            return grad * x.exp() * 1.0001
        if _Scaled.flaw == "detached":  # right values, but not differentiable again
            return grad * td.Tensor(np.exp(x.data))
        if _Scaled.flaw == "nondeterministic":
            return grad * x.exp() * (1 + 1e-12 * np.random.default_rng().random())
        return grad * x.exp()


@pytest.mark.parametrize("flaw", ["gradient", "detached", "nondeterministic", "mutate"])
def test_the_factory_catches_a_broken_op(monkeypatch, flaw):
    op = Op("exp", _Scaled.apply, np.exp, None)
    case = Case((np.linspace(-1, 1, 6).reshape(2, 3),))
    check_case(op, case, np.random.default_rng(0))  # the sound version passes
    monkeypatch.setattr(_Scaled, "flaw", flaw)
    with pytest.raises(AssertionError):
        check_case(op, case, np.random.default_rng(0))
