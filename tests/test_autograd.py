"""The engine: graph order, accumulation, freeing, hooks, grad mode, higher-order gradients."""

import threading

import numpy as np
import pytest

import tinydl as td
from tinydl.testing import assert_close


class Square(td.Function):
    """The README's custom op."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class Split2(td.Function):
    """Two outputs, to check that an unused output gets a zero gradient."""

    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, ga, gb):
        return ga * 2 + gb * 3


def test_issue_example_second_derivative():
    x = td.tensor(2.0, requires_grad=True)
    (g,) = td.grad(x**3, x, create_graph=True)
    (h,) = td.grad(g, x)
    assert (g.item(), h.item()) == (12.0, 12.0)


def test_custom_function_gradcheck_and_double_backward():
    x = td.randn(4, 3, dtype=td.float64, requires_grad=True)
    assert td.gradcheck(Square.apply, x)
    assert td.gradgradcheck(Square.apply, x)


def test_long_chain_has_no_recursion_limit():
    x = td.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_tensor_used_twice_accumulates():
    x = td.tensor([1.0, -2.0], requires_grad=True)
    (x * x + x).sum().backward()
    assert_close(x.grad, [3.0, -3.0])


def test_leaf_grad_accumulates_across_backwards():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    assert_close(x.grad, [5.0, 5.0])


def test_second_backward_raises_unless_retained():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(td.BackwardError, match="second time.*retain_graph=True"):
        y.backward()
    z = (x * x).sum()
    z.backward(retain_graph=True)
    z.backward()
    assert_close(x.grad, [2.0 + 4.0, 4.0 + 8.0])


def test_saved_arrays_are_freed_after_backward():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    y.sum().backward()
    with pytest.raises(td.BackwardError, match="freed"):
        _ = y.grad_fn.saved_tensors


def test_unused_output_of_multi_output_op_gets_zero_gradient():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    a, _ = Split2.apply(x)
    a.sum().backward()
    assert_close(x.grad, [2.0, 2.0])


def test_engine_reduces_broadcast_gradients_once():
    class BroadcastAdd(td.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            return grad, grad  # broadcast-shaped on purpose

    a = td.randn(3, 4, dtype=td.float64, requires_grad=True)
    b = td.randn(4, dtype=td.float64, requires_grad=True)
    c = td.randn(3, 1, dtype=td.float64, requires_grad=True)
    BroadcastAdd.apply(BroadcastAdd.apply(a, b), c).sum().backward()
    assert b.grad.shape == (4,) and c.grad.shape == (3, 1)
    assert_close(b.grad, np.full(4, 3.0))
    assert_close(c.grad, np.full((3, 1), 4.0))


def test_backward_gradient_that_does_not_fit_is_reported():
    class Bad(td.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            return td.ones(5)

    with pytest.raises(td.BackwardError, match=r"Bad.backward: gradient of shape \(5,\)"):
        Bad.apply(td.ones(3, requires_grad=True)).sum().backward()


def test_nonscalar_backward_says_what_to_pass():
    y = td.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(td.BackwardError, match=r"scalar output.*\(2, 3\).*grad="):
        y.backward()
    y.backward(td.ones(2, 3))


def test_backward_without_graph_is_explained():
    with pytest.raises(td.BackwardError, match="does not require grad"):
        (td.ones(2) * 2).backward(td.ones(2))


def test_leaf_gradients_never_alias():
    a = td.ones(3, requires_grad=True)
    b = td.ones(3, requires_grad=True)
    (a + b).sum().backward()
    assert a.grad.data is not b.grad.data
    assert not np.shares_memory(a.grad.data, b.grad.data)


def test_grad_does_not_touch_dot_grad_and_reports_unused():
    x = td.tensor(3.0, requires_grad=True)
    w = td.tensor(1.0, requires_grad=True)
    (g,) = td.grad(x * x, x)
    assert g.item() == 6.0 and x.grad is None
    with pytest.raises(td.BackwardError, match="input 1.*allow_unused=True"):
        td.grad(x * 2, [x, w])
    assert td.grad(x * 2, [x, w], allow_unused=True)[1] is None


def test_grad_with_respect_to_intermediate():
    x = td.tensor(2.0, requires_grad=True)
    y = x * 3
    z = y * y
    (gy,) = td.grad(z, y)
    assert gy.item() == 12.0


def test_third_derivative():
    x = td.tensor(1.5, dtype=td.float64, requires_grad=True)
    (g1,) = td.grad(x**4, x, create_graph=True)
    (g2,) = td.grad(g1, x, create_graph=True)
    (g3,) = td.grad(g2, x)
    assert np.isclose(g3.item(), 24 * 1.5)


def test_double_backward_through_saved_output_of_dropped_tensor():
    # exp saves its output; the output tensor itself is gone when the second pass runs
    x = td.tensor(0.5, dtype=td.float64, requires_grad=True)
    (g,) = td.grad(x.exp() * 1.0, x, create_graph=True)
    (h,) = td.grad(g, x)
    assert np.isclose(h.item(), np.exp(0.5))


def test_no_grad_context_and_decorator():
    x = td.ones(2, requires_grad=True)
    with td.no_grad():
        assert not (x * 2).requires_grad
        with td.enable_grad():
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad

    @td.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and td.is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def worker():
        with td.no_grad():
            inside.set()
            release.wait(5)
            seen["worker"] = td.is_grad_enabled()

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    seen["main"] = td.is_grad_enabled()
    release.set()
    t.join()
    assert seen == {"worker": False, "main": True}


def test_hooks_on_leaf_and_intermediate():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    y = x * 3
    y.register_hook(lambda g: seen.append(g.tolist()))
    handle = x.register_hook(lambda g: g * 10)
    (y * y).sum().backward()
    assert seen == [[6.0, 12.0]]
    assert_close(x.grad, [180.0, 360.0])
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert_close(x.grad, [1.0, 1.0])


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(td.DTypeError, match="floating-point"):
        td.tensor([1, 2], requires_grad=True)


def test_detach_cuts_the_graph_and_shares_memory():
    x = td.ones(3, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    assert td.tensor([1.0]).detach().is_leaf


def test_item_assignment_is_refused_with_advice():
    with pytest.raises(TypeError, match="no in-place autograd"):
        td.ones(3)[0] = 1.0
