"""The public assertion helpers pass on right values and fail loudly, naming what is wrong."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tests.devices import CPU
from tinydl import layers as nn
from tinydl.testing import assert_close, assert_grad_close, assert_grads_match


def _mlp_problem(rng, backend=CPU):
    """A two-layer ReLU net in float64 with its hand-derived gradients (see the example)."""
    p = {
        "W1": rng.normal(size=(5, 4)),
        "b1": rng.normal(size=4),
        "W2": rng.normal(size=(4, 3)),
        "b2": rng.normal(size=3),
    }
    x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    z1 = x @ p["W1"] + p["b1"]
    h = np.maximum(z1, 0)
    logits = h @ p["W2"] + p["b2"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    g = probs.copy()
    g[np.arange(6), y] -= 1
    g /= 6
    g_z1 = (g @ p["W2"].T) * (z1 > 0)
    manual = {"W1": x.T @ g_z1, "b1": g_z1.sum(0), "W2": h.T @ g, "b2": g.sum(0)}
    t = {k: backend.tensor(v, requires_grad=True) for k, v in p.items()}
    loss = F.cross_entropy(F.relu(backend.tensor(x) @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"],
                           backend.tensor(y))  # fmt: skip
    return manual, t, loss


def test_grads_match_passes_on_right_gradients(backend, rng):
    manual, params, loss = _mlp_problem(rng, backend)
    diffs = assert_grads_match(manual, params, loss, rtol=1e-10, atol=1e-12)
    assert set(diffs) == set(manual) and max(diffs.values()) < 1e-12
    assert all(p.grad is None for p in params.values())  # .grad is left untouched
    loss.backward()  # and the graph is still there
    assert_close(params["b2"].grad, manual["b2"], rtol=1e-12)


def test_grads_match_names_the_wrong_parameter_and_worst_element(rng):
    manual, params, loss = _mlp_problem(rng)
    manual["W2"] = manual["W2"].copy()
    manual["W2"][2, 1] += 0.5
    with pytest.raises(AssertionError) as info:
        assert_grads_match(manual, params, loss)
    text = str(info.value)
    assert "1 of 4 gradients differ" in text and "W2: 1 of 12 elements" in text
    assert "index (2, 1)" in text and f"manual {float(manual['W2'][2, 1])!r} vs autograd" in text
    assert "W1" not in text and "b1" not in text


def test_grads_match_catches_a_small_error(rng):
    manual, params, loss = _mlp_problem(rng)
    manual["b1"] = manual["b1"] + 1e-4  # a small error is still caught at the default tolerance
    with pytest.raises(AssertionError, match=r"b1: \d+ of 4 elements differ"):
        assert_grads_match(manual, params, loss)


def test_grads_match_shape_and_name_mismatches(rng):
    manual, params, loss = _mlp_problem(rng)
    with pytest.raises(AssertionError, match=r"b2: manual gradient has shape \(1, 3\)"):
        assert_grads_match({**manual, "b2": manual["b2"][None]}, params, loss)
    with pytest.raises(AssertionError, match="no manual gradient for b1, b2"):
        assert_grads_match({"W1": manual["W1"], "W2": manual["W2"]}, params, loss)
    assert_grads_match({"W1": manual["W1"]}, params, loss, strict=False)
    with pytest.raises(AssertionError, match="no parameter named W3"):
        assert_grads_match({**manual, "W3": manual["W2"]}, params, loss)


def test_grads_match_nan_fails_and_unused_parameter_is_zero():
    w = td.tensor([1.0, 2.0], requires_grad=True)
    unused = td.tensor([3.0], requires_grad=True)
    loss = (w * w).sum()
    assert_grads_match({"w": [2.0, 4.0], "unused": [0.0]}, {"w": w, "unused": unused}, loss)
    with pytest.raises(AssertionError, match="unused"):
        assert_grads_match({"w": [2.0, 4.0], "unused": [1.0]}, {"w": w, "unused": unused}, loss)
    with pytest.raises(AssertionError, match="nan"):
        assert_grads_match({"w": [2.0, np.nan], "unused": [0.0]}, {"w": w, "unused": unused}, loss)
    with pytest.raises(ValueError, match="'c' is not a Tensor that requires grad"):
        assert_grads_match({"c": [0.0]}, {"c": td.tensor([1.0])}, loss)


def test_grads_match_takes_a_module(rng):
    layer = nn.Linear(3, 2)
    x = td.tensor(rng.normal(size=(4, 3)).astype(np.float32))
    loss = layer(x).sum()
    manual = {"weight": np.tile(x.data.sum(0), (2, 1)), "bias": np.full(2, 4.0)}
    assert_grads_match(manual, layer, loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(AssertionError, match="weight"):
        assert_grads_match({**manual, "weight": -manual["weight"]}, layer, loss)


def test_assert_close_checks_shape_and_values(backend):
    x = backend.tensor([1.0, 2.0])
    assert_close(x, np.array([1.0, 2.0 + 1e-9]), rtol=1e-6)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x, np.array([[1.0, 2.0]]))
    with pytest.raises(AssertionError):
        assert_close(x, np.array([1.0, 2.1]), rtol=1e-3)


def test_assert_grad_close_against_central_differences(backend):
    x = backend.tensor(np.array([0.3, -1.2, 2.0]), requires_grad=True)
    assert_grad_close(lambda t: (t * t * t).sum(), [x], second_order=True)
    with pytest.raises(td.GradcheckError):
        assert_grad_close(lambda t: _wrong_square(t).sum(), [x])


class _WrongSquare(td.Function):
    """x**2 with a deliberately wrong backward (x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x


def _wrong_square(t):
    return _WrongSquare.apply(t)
