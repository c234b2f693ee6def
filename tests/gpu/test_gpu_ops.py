"""Functional ops on the backend: the same inputs on the CPU and on the device give the same
outputs and the same input gradients (for one random upstream gradient), in float64 and in
float32. The ops' code is shared: it reaches NumPy or CuPy through the array module of its
inputs, so these tests check that no op assumes NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_backend import Backend

import tinydl as td
import tinydl.functional as F

CPU = Backend("cpu")


def _pos(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _n(rng, shape):
    return rng.standard_normal(shape)


def _sq(t):
    return (t * t).sum()


def _labels(rng, shape, classes, ignore=False):
    t = rng.integers(0, classes, shape)
    if ignore:
        t.reshape(-1)[1::3] = -100
    return t


# name -> (fn(*tensors, **kw), inputs(rng) -> list of float arrays, fixed(rng) -> dict)
OPS = {
    "add_broadcast": (lambda a, b: a + b, lambda r: [_n(r, (3, 4)), _n(r, (4,))], None),
    "sub_mul_div": (lambda a, b: (a - b) * a / b, lambda r: [_n(r, (5,)), _pos(r, (5,))], None),
    "pow_scalars": (lambda a: 2.0 ** a + a ** 3 - 1 / a, lambda r: [_pos(r, (2, 3))], None),
    "matmul": (lambda a, b: a @ b, lambda r: [_n(r, (3, 4)), _n(r, (4, 5))], None),
    "matmul_batched": (lambda a, b: a @ b, lambda r: [_n(r, (2, 3, 4)), _n(r, (4, 2))], None),
    "linear": (F.linear, lambda r: [_n(r, (4, 3)), _n(r, (2, 3)), _n(r, (2,))], None),
    "unary": (
        lambda a: a.exp() + a.log() + a.sqrt() + a.tanh() + a.sigmoid() + a.sin() + a.cos()
        + F.log1p(a) + F.erf(a) + F.gelu(a) + F.softplus(a) + F.elu(a - 1) + a.abs(),
        lambda r: [_pos(r, (3, 4))],
        None,
    ),
    "relu_clamp": (
        lambda a: F.relu(a) + a.clamp(-0.5, 0.5) + F.leaky_relu(a, 0.1),
        lambda r: [_n(r, (4, 5))],
        None,
    ),
    "max_min_where": (
        lambda a, b: F.maximum(a, b) - F.minimum(a, b) + td.where(a > b, a, b * 2),
        lambda r: [_n(r, (6,)), _n(r, (6,))],
        None,
    ),
    "reductions": (
        lambda a: a.sum(0) + a.mean(1).sum() + a.max(0)[0] + a.min(1)[0].sum() + a.var(0)
        + a.std(1).mean() + a.logsumexp(0) + a.norm() + (a * 0.1 + 1).prod(0),
        lambda r: [_n(r, (4, 4))],
        None,
    ),
    "shape": (
        lambda a: _sq(td.cat([a.reshape(2, 6).T, a.reshape(6, 2)], 1).permute(1, 0).flatten())
        + _sq(td.stack(a.split(2, 0), 0).flip(0)[0]) + _sq(a.unsqueeze(0).squeeze(0).T[1:])
        + _sq(a.expand(2, 4, 3)[1, :2]) + _sq(F.pad(a, (1, 1))[1:3]) + _sq(a.repeat(2, 1)[3:6])
        + (a.chunk(3, 1)[0] ** 3).sum(),
        lambda r: [_n(r, (4, 3))],
        None,
    ),
    "getitem": (
        lambda a, idx, mask: a[1:, ::2].sum() + a[idx].sum(0) + a[mask].sum() + a[-1, [0, 0, 2]],
        lambda r: [_n(r, (4, 3))],
        lambda r: {"idx": np.array([0, 2, 2]), "mask": r.standard_normal((4, 3)) > 0},
    ),
    "softmax": (
        lambda a: F.softmax(a, 1) * F.log_softmax(a, 0),
        lambda r: [_n(r, (3, 5)) * 4],
        None,
    ),
    "cross_entropy": (
        lambda x, t, w: F.cross_entropy(x, t) + F.cross_entropy(x, t, weight=w, reduction="sum")
        + F.cross_entropy(x, t, label_smoothing=0.1),
        lambda r: [_n(r, (6, 4))],
        lambda r: {"t": _labels(r, (6,), 4, ignore=True), "w": _pos(r, (4,))},
    ),
    "cross_entropy_probs_nll": (
        lambda x, p, t: F.cross_entropy(x, p) + F.nll_loss(F.log_softmax(x, 1), t),
        lambda r: [_n(r, (2, 3, 4)), _pos(r, (2, 3, 4))],
        lambda r: {"t": _labels(r, (2, 4), 3)},
    ),
    "regression_losses": (
        lambda x, y: F.mse_loss(x, y) + F.l1_loss(x, y, reduction="sum")
        + F.binary_cross_entropy_with_logits(x, y.sigmoid()),
        lambda r: [_n(r, (3, 4)), _n(r, (3, 4))],
        None,
    ),
    "conv2d": (
        lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
        lambda r: [_n(r, (2, 3, 7, 6)), _n(r, (4, 3, 3, 3)), _n(r, (4,))],
        None,
    ),
    "conv2d_strided_dilated_groups": (
        lambda x, w: F.conv2d(x, w, None, stride=(2, 1), padding=(0, 2), dilation=2, groups=2),
        lambda r: [_n(r, (2, 4, 9, 8)), _n(r, (6, 2, 3, 2))],
        None,
    ),
    "conv2d_5x5": (
        lambda x, w: F.conv2d(x, w, padding=2),
        lambda r: [_n(r, (3, 1, 12, 12)), _n(r, (6, 1, 5, 5))],
        None,
    ),
    "pools": (
        lambda x: F.max_pool2d(x, 2).sum() + F.max_pool2d(x, 3, 2, 1).sum()
        + F.avg_pool2d(x, 2, 1).sum() + F.adaptive_avg_pool2d(x, (3, 2)).sum()
        + F.adaptive_avg_pool2d(x, 1).sum(),
        lambda r: [_n(r, (2, 3, 8, 6))],
        None,
    ),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), lambda r: [_n(r, (2, 3, 8, 8))], None),
    "batch_norm_train": (
        lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training=True),
        lambda r: [_n(r, (4, 3, 5, 5)) * 2 + 1, _pos(r, (3,)), _n(r, (3,))],
        lambda r: {"rm": np.zeros(3), "rv": np.ones(3)},
    ),
    "batch_norm_1d_eval": (
        lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training=False),
        lambda r: [_n(r, (6, 3)), _pos(r, (3,)), _n(r, (3,))],
        lambda r: {"rm": _n(r, (3,)), "rv": _pos(r, (3,))},
    ),
    "layer_norm": (
        lambda x, w, b: F.layer_norm(x * 1.5, (4,), w, b),  # a non-leaf input
        lambda r: [_n(r, (3, 4)), _pos(r, (4,)), _n(r, (4,))],
        None,
    ),
    "dropout_off": (
        lambda x: F.dropout(x, 0.5, training=False) + F.dropout(x, 0.0),
        lambda r: [_n(r, (3, 3))],
        None,
    ),
}


def _run(backend: Backend, name: str, dtype, seed: int = 0):
    """Output and input gradients of OPS[name] on ``backend``, as NumPy arrays."""
    fn, inputs, fixed = OPS[name]
    rng = np.random.default_rng(seed)
    xs = [backend.tensor(a.astype(dtype), requires_grad=True) for a in inputs(rng)]
    kw = {}
    for k, v in (fixed(rng) if fixed else {}).items():
        v = v.astype(dtype) if v.dtype.kind == "f" else v
        kw[k] = backend.tensor(v)
    out = fn(*xs, **kw)
    assert out.device == backend.device, f"{name}: output on {out.device}"
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(dtype)
    out.backward(backend.tensor(upstream))
    for x in xs:
        assert x.grad is None or x.grad.device == backend.device
    grads = [np.zeros(x.shape) if x.grad is None else backend.numpy(x.grad) for x in xs]
    state = {k: backend.numpy(v) for k, v in kw.items() if v.dtype.kind == "f"}
    return backend.numpy(out), grads, state


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_op_matches_the_cpu(backend, name, dtype):
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    want, want_grads, want_state = _run(CPU, name, dtype)
    got, grads, state = _run(backend, name, dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{name} forward")
    for i, (g, w) in enumerate(zip(grads, want_grads)):
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale,
                                   err_msg=f"{name} gradient {i}")
    for k in want_state:  # running statistics updated in place
        np.testing.assert_allclose(state[k], want_state[k], rtol=rtol, atol=atol, err_msg=k)


def test_argmax_argmin_one_hot(backend):
    a = np.random.default_rng(0).standard_normal((4, 5))
    x = backend.tensor(a)
    np.testing.assert_array_equal(backend.numpy(x.argmax(1)), a.argmax(1))
    np.testing.assert_array_equal(backend.numpy(td.argmin(x, 0)), a.argmin(0))
    onehot = F.one_hot(backend.tensor(np.array([0, 2, 1])), 3)
    assert onehot.device == backend.device
    np.testing.assert_array_equal(backend.numpy(onehot), np.eye(3, dtype=np.int64)[[0, 2, 1]])


def test_dropout_on_the_backend(backend):
    td.manual_seed(0)
    x = backend.tensor(np.ones((200, 50), np.float32), requires_grad=True)
    y = F.dropout(x, 0.25)
    kept = backend.numpy(y) != 0
    assert 0.7 < kept.mean() < 0.8 and y.device == backend.device
    np.testing.assert_allclose(backend.numpy(y)[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(backend.numpy(x.grad) != 0, kept)
    td.manual_seed(0)
    again = backend.numpy(F.dropout(x, 0.25))
    np.testing.assert_array_equal(again, backend.numpy(y))  # the seed makes it reproducible


def test_double_backward_on_the_backend(backend):
    a = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    w = np.random.default_rng(1).standard_normal((2, 1, 3, 3))

    def second(b: Backend):
        x, k = b.tensor(a, requires_grad=True), b.tensor(w, requires_grad=True)
        (g,) = td.grad(F.max_pool2d(F.conv2d(x, k, padding=1), 2).pow(2).sum(), x,
                       create_graph=True)
        (h,) = td.grad(g.sum(), k)
        return b.numpy(h)

    np.testing.assert_allclose(second(backend), second(CPU), rtol=1e-10, atol=1e-12)


def test_no_host_sync_needed_to_build_a_step(backend):
    """A training step's ops return device tensors without reading values back."""
    x = backend.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    loss = (F.relu(x) * 2).mean()
    loss.backward()
    assert loss.device == backend.device and x.grad.device == backend.device
    assert isinstance(loss.item(), float)  # .item() is the explicit sync, for logging
