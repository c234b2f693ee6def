import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
import tinydl.functional as F
from tests.devices import CPU
from tests.op_check import check_op, torch
from tinydl.testing import tensors

TF = torch and torch.nn.functional
REDUCTIONS = ["none", "mean", "sum"]


def np_log_softmax(x, dim):
    z = x - x.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


def np_class_loss(logp, t, w, ignore, eps, reduction):
    """PyTorch's cross-entropy on log-probabilities, written out per element in a loop."""
    c = logp.shape[1]
    w = np.ones(c) if w is None else w
    lp = np.moveaxis(logp, 1, -1).reshape(-1, c)
    losses, denom = [], 0.0
    for row, y in zip(lp, t.reshape(-1)):
        if y == ignore:
            losses.append(0.0)
            continue
        nll = -w[y] * row[y]
        smooth = -(w * row).sum() / c
        losses.append((1 - eps) * nll + eps * smooth)
        denom += w[y]
    losses = np.array(losses).reshape(t.shape)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / denom


@st.composite
def class_problem(draw, min_classes=1):
    """Logits (N, C, d...), integer targets with some ignored, optional class weights."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(min_classes, 4))
    extra = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    x = draw(tensors((n, c) + extra, min_value=-4, max_value=4, noncontiguous=None))
    t = np.array(
        draw(
            st.lists(
                st.integers(0, c - 1),
                min_size=int(np.prod((n,) + extra)),
                max_size=int(np.prod((n,) + extra)),
            )
        )
    ).reshape((n,) + extra)
    ignore = draw(st.sampled_from([-100, 0, 1]))
    if ignore == -100 and draw(st.booleans()):
        t.reshape(-1)[0] = -100
    w = draw(st.none() | st.lists(st.floats(0.1, 2.0), min_size=c, max_size=c).map(np.array))
    return x, t, ignore, w


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(problem=class_problem(), smoothing=st.sampled_from([0.0, 0.25]))
def test_cross_entropy_class_indices(backend, reduction, problem, smoothing):
    x, t, ignore, w = problem
    tt, wt = backend.tensor(t), None if w is None else backend.tensor(w)
    if reduction == "mean" and (t != ignore).sum() == 0:
        return  # nan: covered by test_all_ignored_mean_is_nan
    kw = dict(ignore_index=ignore, reduction=reduction, label_smoothing=smoothing)
    check_op(
        lambda a: F.cross_entropy(a, tt, weight=wt, **kw),
        [x],
        lambda a: np_class_loss(np_log_softmax(a, 1), t, w, ignore, smoothing, reduction),
        TF
        and (
            lambda a: TF.cross_entropy(
                a, torch.tensor(t), weight=None if w is None else torch.tensor(w), **kw
            )
        ),
        second_order=True,
        backend=backend,
    )


def composed_cross_entropy(x, t, w, ignore, eps, reduction, b=CPU):
    """The reference twin: log_softmax, one_hot and reductions composed from tinydl ops."""
    c = x.shape[1]
    keep = b.tensor((t != ignore).astype(np.float64))
    oh = F.one_hot(b.tensor(np.where(t == ignore, 0, t)), c).double()
    oh = oh.permute((0, oh.ndim - 1) + tuple(range(1, oh.ndim - 1)))  # class dim to axis 1
    wv = b.tensor(np.ones(c)) if w is None else b.tensor(w)
    wv = wv.reshape((c,) + (1,) * (x.ndim - 2))
    logp = F.log_softmax(x, dim=1)
    nll = -(oh * wv * logp).sum(1) * keep
    smooth = -(wv * logp).sum(1) * keep / c
    loss = (1 - eps) * nll + eps * smooth
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / ((oh * wv).sum(1) * keep).sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(problem=class_problem(), smoothing=st.sampled_from([0.0, 0.1, 1.0]))
def test_fused_cross_entropy_equals_composed_twin(backend, reduction, problem, smoothing):
    x, t, ignore, w = problem
    if reduction == "mean" and (t != ignore).sum() == 0:
        return
    x = backend.put(x)
    kw = dict(ignore_index=ignore, reduction=reduction, label_smoothing=smoothing)
    weight = None if w is None else backend.tensor(w)
    fused = F.cross_entropy(x, backend.tensor(t), weight=weight, **kw)
    twin = composed_cross_entropy(x, t, w, ignore, smoothing, reduction, backend)
    np.testing.assert_allclose(backend.numpy(fused), backend.numpy(twin), rtol=1e-12, atol=1e-12)
    v = backend.tensor(np.random.default_rng(0).standard_normal(fused.shape))
    (g1,) = td.grad((fused * v).sum(), x)
    (g2,) = td.grad((twin * v).sum(), x)
    np.testing.assert_allclose(backend.numpy(g1), backend.numpy(g2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), smoothing=st.sampled_from([0.0, 0.2]), weighted=st.booleans())
def test_cross_entropy_probability_targets(backend, reduction, data, smoothing, weighted):
    n, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    extra = tuple(data.draw(st.lists(st.integers(1, 2), max_size=2)))
    x = data.draw(tensors((n, c) + extra, min_value=-4, max_value=4))
    p = data.draw(tensors((n, c) + extra, min_value=0.0, max_value=1.0))
    w = backend.tensor(np.linspace(0.5, 1.5, c)) if weighted else None

    def ref(a, q):
        q = q * (1 - smoothing) + smoothing / c
        wv = np.ones(c) if w is None else backend.numpy(w)
        per = -(np_log_softmax(a, 1) * q * wv.reshape((c,) + (1,) * len(extra))).sum(1)
        return {"none": per, "sum": per.sum(), "mean": per.sum() / per.size}[reduction]

    kw = dict(reduction=reduction, label_smoothing=smoothing)
    tw = None if w is None or torch is None else torch.tensor(backend.numpy(w))
    check_op(
        lambda a, q: F.cross_entropy(a, q, weight=w, **kw),
        [x, p],
        ref,
        TF and (lambda a, q: TF.cross_entropy(a, q, weight=tw, **kw)),
        second_order=True,
        backend=backend,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target", [np.array(3), np.full(5, 0.2)], ids=["index", "probs"])
def test_cross_entropy_unbatched(backend, reduction, target):
    x = td.randn(5, dtype=td.float64, requires_grad=True, device=backend.name)
    kw = dict(reduction=reduction, label_smoothing=0.1)
    out = check_op(
        lambda a: F.cross_entropy(a, backend.tensor(target), **kw),
        [x],
        lambda a: (
            -(
                np_log_softmax(a, 0) * (np.eye(5)[target] if target.ndim == 0 else target) * 0.9
                + np_log_softmax(a, 0) * 0.02
            ).sum()
        ),
        TF and (lambda a: TF.cross_entropy(a, torch.tensor(target), **kw)),
        second_order=True,
        backend=backend,
    )
    assert out.shape == ()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_stable_for_any_magnitude(backend, reduction, smoothing, dtype):
    logits = np.array(
        [[-1000.0, 1.0, 0.0], [1e20, -1e20, 3.0], [-1e20, 1e20, -1e20], [-np.inf, 2.0, 1.0]],
        dtype=dtype,
    )
    target = np.array([1, 0, 2, 1])
    x = backend.tensor(logits, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.cross_entropy(
            x, backend.tensor(target), reduction=reduction, label_smoothing=smoothing
        )
        out.backward(td.ones_like(out))
    assert out.dtype == x.grad.dtype == np.dtype(dtype)
    got, grad = backend.numpy(out), backend.numpy(x.grad)
    assert np.isfinite(grad).all()
    if smoothing == 0:  # with smoothing the -inf logit makes the loss inf, as in PyTorch
        assert np.isfinite(got).all()
    if torch is not None:
        t = torch.tensor(logits, requires_grad=True)
        ref = TF.cross_entropy(
            t, torch.tensor(target), reduction=reduction, label_smoothing=smoothing
        )
        ref.backward(torch.ones_like(ref))
        np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_all_ignored_mean_is_nan_like_pytorch(backend):
    x = td.randn(2, 3, requires_grad=True, device=backend.name)
    ignored = backend.tensor([-100, -100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.cross_entropy(x, ignored)
    assert np.isnan(out.item())
    assert F.cross_entropy(x, ignored, reduction="sum").item() == 0


def test_cross_entropy_float32_keeps_float32(backend):
    x = td.randn(4, 3, 2, requires_grad=True, device=backend.name)
    w = backend.tensor([1.0, 2.0, 0.5])
    out = F.cross_entropy(
        x, backend.tensor([[0, 1], [2, 2], [1, 0], [0, -100]]), weight=w, label_smoothing=0.1
    )
    out.backward()
    assert out.dtype == x.grad.dtype == np.float32
    p = td.rand(4, 3, 2, requires_grad=True, device=backend.name)
    out = F.cross_entropy(x, p)
    out.backward()
    assert out.dtype == p.grad.dtype == np.float32


def test_cross_entropy_errors():
    x = td.randn(4, 3)
    with pytest.raises(IndexError, match="cross_entropy: target 3 is out of bounds for 3 classes"):
        F.cross_entropy(x, td.tensor([0, 1, 3, 0]))
    with pytest.raises(td.ShapeError, match=r"target shape \(3,\) does not fit input \(4, 3\)"):
        F.cross_entropy(x, td.tensor([0, 1, 2]))
    with pytest.raises(td.DTypeError, match="class-index target must be an integer"):
        F.cross_entropy(x, td.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(td.DTypeError, match="class probabilities and must be floating"):
        F.cross_entropy(x, td.zeros(4, 3, dtype=td.int64))
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        F.cross_entropy(x, td.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(x, td.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(td.ShapeError, match=r"weight must have shape \(3,\)"):
        F.cross_entropy(x, td.tensor([0, 1, 2, 0]), weight=td.ones(4))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(problem=class_problem())
def test_nll_loss(backend, reduction, problem):
    x, t, ignore, w = problem
    if reduction == "mean" and (t != ignore).sum() == 0:
        return
    kw = dict(ignore_index=ignore, reduction=reduction)
    tt, wt = backend.tensor(t), None if w is None else backend.tensor(w)
    check_op(
        lambda a: F.nll_loss(a, tt, weight=wt, **kw),
        [x],
        lambda a: np_class_loss(a, t, w, ignore, 0.0, reduction),
        TF
        and (
            lambda a: TF.nll_loss(
                a, torch.tensor(t), weight=None if w is None else torch.tensor(w), **kw
            )
        ),
        second_order=True,
        backend=backend,
    )


def test_nll_loss_of_log_softmax_is_cross_entropy(backend):
    x = td.randn(3, 4, dtype=td.float64, device=backend.name)
    t = backend.tensor([0, 3, 1])
    np.testing.assert_allclose(
        F.nll_loss(F.log_softmax(x, 1), t).item(), F.cross_entropy(x, t).item(), rtol=1e-14
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_mse_and_l1(backend, reduction, data):
    shape = data.draw(st.lists(st.integers(1, 4), max_size=3).map(tuple))
    a, b = data.draw(tensors(shape)), data.draw(tensors(shape))
    red = {"none": lambda v: v, "sum": np.sum, "mean": np.mean}[reduction]
    check_op(
        lambda x, y: F.mse_loss(x, y, reduction=reduction),
        [a, b],
        lambda x, y: red((x - y) ** 2),
        TF and (lambda x, y: TF.mse_loss(x, y, reduction=reduction)),
        second_order=True,
        backend=backend,
    )
    b2 = td.tensor(
        a.data + np.where(data.draw(tensors(shape)).data >= 0, 1, -1) * (0.01 + np.abs(b.data)),
        requires_grad=True,
    )  # |a - b| >= 0.01: no kink
    check_op(
        lambda x, y: F.l1_loss(x, y, reduction=reduction),
        [a, b2],
        lambda x, y: red(np.abs(x - y)),
        TF and (lambda x, y: TF.l1_loss(x, y, reduction=reduction)),
        backend=backend,
    )


def np_bce(x, t, w, pw):
    pw = 1.0 if pw is None else pw
    sig = 1 / (1 + np.exp(-x))
    loss = -(pw * t * np.log(sig) + (1 - t) * np.log(1 - sig))
    return loss if w is None else loss * w


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), weighted=st.booleans(), positive=st.booleans())
def test_binary_cross_entropy_with_logits(backend, reduction, data, weighted, positive):
    n, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    x = data.draw(tensors((n, c), min_value=-5, max_value=5))
    t = data.draw(tensors((n, c), min_value=0.0, max_value=1.0))
    inputs = [x, t]
    # PyTorch does not differentiate weight and pos_weight: compare with it without their grads
    if weighted:
        inputs.append(data.draw(tensors((c,), min_value=0.1, max_value=2.0, requires_grad=False)))
    if positive:
        inputs.append(data.draw(tensors((c,), min_value=0.1, max_value=3.0, requires_grad=False)))

    def split(rest):
        rest = list(rest)
        w = rest.pop(0) if weighted else None
        pw = rest.pop(0) if positive else None
        return w, pw

    def fn(a, b, *rest):
        w, pw = split(rest)
        return F.binary_cross_entropy_with_logits(a, b, w, pw, reduction=reduction)

    def ref(a, b, *rest):
        per = np_bce(a, b, *split(rest))
        return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]

    def tfn(a, b, *rest):
        w, pw = split(rest)
        return TF.binary_cross_entropy_with_logits(a, b, w, pos_weight=pw, reduction=reduction)

    check_op(fn, inputs, ref, TF and tfn, second_order=True, backend=backend)
    if weighted or positive:  # tinydl does differentiate them
        rest = [backend.tensor(t, requires_grad=True) for t in inputs[2:]]
        td.gradcheck(fn, [backend.put(t) for t in inputs[:2]] + rest)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_stable_for_any_magnitude(backend, dtype):
    x = backend.tensor([1e20, -1e20, 1e20, -1e20, -1000.0, 1000.0], dtype=dtype, requires_grad=True)
    t = backend.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], dtype=dtype)
    pw = backend.tensor([2.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none")
        out.backward(td.ones_like(out))
    assert out.dtype == x.grad.dtype == np.dtype(dtype)
    np.testing.assert_allclose(backend.numpy(out), [0, 0, 1e20, 2e20, 1000, 500], rtol=1e-6)
    np.testing.assert_allclose(backend.numpy(x.grad), [0, 0, 1, -2, -1.0, 0.5], rtol=1e-6)


def test_bce_with_logits_shape_error():
    with pytest.raises(td.ShapeError, match=r"target shape \(3,\) must equal input shape \(2, 3\)"):
        F.binary_cross_entropy_with_logits(td.randn(2, 3), td.rand(3))


@given(data=st.data())
def test_one_hot(backend, data):
    shape = data.draw(st.lists(st.integers(0, 3), max_size=3).map(tuple))
    c = data.draw(st.integers(1, 5))
    a = (
        np.array(
            data.draw(
                st.lists(
                    st.integers(0, c - 1),
                    min_size=int(np.prod(shape)),
                    max_size=int(np.prod(shape)),
                )
            )
        )
        .reshape(shape)
        .astype(np.int64)
    )
    out = F.one_hot(backend.tensor(a), c)
    assert out.dtype == np.int64 and not out.requires_grad and out.shape == shape + (c,)
    assert out.device == backend.device
    np.testing.assert_array_equal(backend.numpy(out), np.eye(c, dtype=np.int64)[a])
    if torch is not None:
        np.testing.assert_array_equal(backend.numpy(out), TF.one_hot(torch.tensor(a), c).numpy())


def test_one_hot_infers_classes_and_errors():
    assert F.one_hot(td.tensor([0, 2])).shape == (2, 3)
    with pytest.raises(
        ValueError,
        match=r"one_hot: class values must be in \[0, 2\), got values "
        r"in \[0, 2\]",
    ):
        F.one_hot(td.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="class values must be in"):
        F.one_hot(td.tensor([-1, 0]), 3)
    with pytest.raises(td.DTypeError, match="one_hot: expected an integer tensor"):
        F.one_hot(td.tensor([0.0]))
    with pytest.raises(ValueError, match="cannot infer num_classes from an empty tensor"):
        F.one_hot(td.zeros(0, dtype=td.int64))


@pytest.mark.parametrize(
    "loss",
    [
        lambda x, y: F.mse_loss(x, y),
        lambda x, y: F.l1_loss(x, y, reduction="sum"),
        lambda x, y: F.binary_cross_entropy_with_logits(
            x, y, td.rand(3, device=x.device), td.rand(3, device=x.device)
        ),
        lambda x, y: F.nll_loss(
            x, td.tensor([0, 2], device=x.device), weight=td.rand(3, device=x.device)
        ),
    ],
    ids=["mse", "l1", "bce", "nll"],
)
def test_float32_stays_float32(backend, loss):
    x = td.randn(2, 3, requires_grad=True, device=backend.name)
    y = td.rand(2, 3, requires_grad=True, device=backend.name)
    out = loss(x, y)
    out.backward()
    assert out.dtype == x.grad.dtype == np.float32
    assert y.grad is None or y.grad.dtype == np.float32
