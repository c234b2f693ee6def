"""td.autograd.trace, td.autograd.detect_anomaly and the two guards (tinydl/debug.py)."""

import gc
import json
import warnings

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import debug
from tinydl import layers as nn


@pytest.fixture(autouse=True)
def fresh_guards():
    debug._reset_guards()
    yield
    debug._reset_guards()


def _leaves(rng):
    a = td.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = td.tensor(rng.standard_normal(3), requires_grad=True)
    return a, b


# ----------------------------------------------------------------------------- trace


def test_trace_records_order_names_shapes_and_norms(rng):
    a, b = _leaves(rng)
    out = (a * b + a).sum()
    with td.autograd.trace() as t:
        out.backward()
    assert [r.name for r in t.records] == ["SumBackward", "AddBackward", "MulBackward"]
    assert [r.input_shapes for r in t.records] == [((2, 3),), ((2, 3), (2, 3)), ((2, 3), (3,))]
    assert [r.output_shapes for r in t.records] == [((),), ((2, 3),), ((2, 3),)]
    ones = np.ones((2, 3))
    expected = [  # the gradients each function produced, computed by hand
        [ones],
        [ones, ones],
        [ones * b.data, (ones * a.data).sum(0)],  # b's gradient reduced to b's shape
    ]
    for record, grads in zip(t.records, expected):
        np.testing.assert_allclose(record.grad_norms, [np.linalg.norm(g) for g in grads])
        assert record.time_s >= 0
    # and they add up to what backward accumulated
    np.testing.assert_allclose(a.grad.data, ones + ones * b.data)
    assert t.records[2].grad_norms[1] == pytest.approx(np.linalg.norm(b.grad.data))


def test_trace_norm_is_none_where_no_gradient_flows(rng):
    a = td.tensor(rng.standard_normal(3), requires_grad=True)
    x = td.tensor(rng.standard_normal(3))  # does not require grad
    with td.autograd.trace() as t:
        (a * x).sum().backward()
    assert t.records[1].name == "MulBackward"
    assert t.records[1].grad_norms[0] == pytest.approx(np.linalg.norm(x.data))
    assert t.records[1].grad_norms[1] is None
    head, _, _, mul = t.table().splitlines()[:4]
    assert mul[head.index("grad norms") :].split("  ")[0].endswith(", -")  # shown as "-"


def test_trace_table_dict_and_scope(rng):
    a, b = _leaves(rng)
    with td.autograd.trace() as t:
        (a * b).sum().backward()
    (a * b).sum().backward()  # outside the block: not recorded
    assert len(t.records) == 2
    lines = t.table().splitlines()
    assert lines[0].split() == ["#", "function", "input", "shapes", "output", "shapes", "grad"] + [
        "norms",
        "time",
        "(us)",
    ]
    col = lines[0].index("input shapes")
    assert lines[2][col - 2 : col] == "  " and lines[3][col:].startswith("(2, 3), (3,)")
    assert lines[3][lines[0].index("function") :].startswith("MulBackward")
    assert lines[-1].startswith("2 functions")
    assert str(t) == t.table()
    d = json.loads(json.dumps(t.to_dict()))  # plain data
    assert [r["name"] for r in d["records"]] == ["SumBackward", "MulBackward"]
    assert d["records"][1]["input_shapes"] == [[2, 3], [3]]
    assert d["total_time_s"] == pytest.approx(sum(r.time_s for r in t.records))


def test_trace_is_reexported_from_autograd():
    assert td.autograd.trace is debug.trace
    assert td.autograd.detect_anomaly is debug.detect_anomaly


# ----------------------------------------------------------------------------- anomalies


def test_anomaly_in_forward_names_the_op():
    x = td.tensor([-1.0, 2.0], dtype="float64", requires_grad=True)
    with np.errstate(invalid="ignore"), td.autograd.detect_anomaly():
        with pytest.raises(td.AnomalyError, match=r"Log produced NaN in forward.*\(2,\) float64"):
            F.log(x)
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.log(x).data[0])  # off again after the block


def test_anomaly_in_backward_names_the_backward():
    x = td.tensor([0.0, 4.0], dtype="float64", requires_grad=True)
    y = F.sqrt(x).sum()  # finite forward, infinite derivative at 0
    with np.errstate(divide="ignore"), td.autograd.detect_anomaly():
        with pytest.raises(td.AnomalyError, match=r"SqrtBackward produced Inf in backward"):
            y.backward()


class _NanGrad(td.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return td.tensor(np.full(grad.shape, np.nan))  # made without an op


def test_anomaly_in_a_returned_gradient():
    x = td.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    y = _NanGrad.apply(x).sum()
    with td.autograd.detect_anomaly():
        with pytest.raises(td.AnomalyError, match=r"_NanGradBackward produced NaN.*input 0"):
            y.backward()
    assert issubclass(td.AnomalyError, RuntimeError) and issubclass(td.AnomalyError, td.TinydlError)


def test_anomaly_trace_keeps_the_failing_op():
    x = td.tensor([0.0, 4.0], dtype="float64", requires_grad=True)
    y = F.sqrt(x).sum()
    with np.errstate(divide="ignore"), td.autograd.trace() as t, td.autograd.detect_anomaly():
        with pytest.raises(td.AnomalyError):
            y.backward()
    assert [r.name for r in t.records] == ["SumBackward"]  # Sqrt raised inside its backward


def _mlp_step(anomaly: bool):
    gen = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    for p in model.parameters():
        p.data[...] = gen.standard_normal(p.shape).astype(p.dtype) * 0.5
    opt = td.optim.SGD(model.parameters(), lr=0.1)
    x = td.tensor(gen.standard_normal((5, 4)), dtype="float32")
    y = td.tensor([0, 1, 2, 1, 0])
    with td.autograd.detect_anomaly(anomaly):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grads = [p.grad.data.copy() for p in model.parameters()]
        opt.step()
    return loss.item(), grads


def test_no_false_alarm_on_a_network_step():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads = _mlp_step(anomaly=True)
    ref_loss, ref_grads = _mlp_step(anomaly=False)
    assert loss == ref_loss
    for g, r in zip(grads, ref_grads):
        np.testing.assert_array_equal(g, r)


# ----------------------------------------------------------------------------- guards


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, td.NumericalStabilityWarning)]


def test_log_of_softmax_warns_once_naming_log_softmax(rng):
    x = td.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    caught = _caught(lambda: [F.log(F.softmax(x, dim=1)) for _ in range(3)])
    assert len(caught) == 1
    assert "F.log_softmax" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the user's line
    assert _caught(lambda: F.softmax(x, dim=1).log()) == []  # once per process


def test_log_of_sigmoid_warns_naming_the_fused_ops(rng):
    x = td.tensor(rng.standard_normal(4), requires_grad=True)
    (w,) = _caught(lambda: F.sigmoid(x).log())
    assert "binary_cross_entropy_with_logits" in str(w.message)
    assert "-F.softplus(-x)" in str(w.message)


class _Halve(td.Function):
    """An op defined outside tinydl, marked as unstable under log."""

    log_warning = "log(halve(x)): use the fused halve_log instead"

    @staticmethod
    def forward(ctx, x):
        return x * 0.5

    @staticmethod
    def backward(ctx, grad):
        return grad * 0.5


def test_the_warning_follows_the_mark_not_the_module(rng, monkeypatch):
    x = td.tensor(rng.standard_normal(4), requires_grad=True)
    (w,) = _caught(lambda: F.log(_Halve.apply(x)))  # a marked op of this test module
    assert str(w.message) == _Halve.log_warning
    assert _caught(lambda: F.log(_Halve.apply(x))) == []  # once per op
    # softmax moved to another module still warns; without the mark nothing does
    softmax_fn = F.softmax(x).grad_fn.fn
    monkeypatch.setattr(softmax_fn, "__module__", "somewhere.else")
    assert len(_caught(lambda: F.log(F.softmax(x)))) == 1
    debug._reset_guards()
    monkeypatch.delattr(softmax_fn, "log_warning")
    assert _caught(lambda: F.log(F.softmax(x))) == []


def test_fused_and_other_logs_do_not_warn(rng):
    x = td.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert _caught(lambda: F.log_softmax(x, dim=1)) == []
    assert _caught(lambda: F.log(F.exp(x))) == []
    assert _caught(lambda: F.log(F.softmax(x, dim=1) + 1e-3)) == []


def _train(steps: int, leak: bool, cycle: bool = False):
    gen = np.random.default_rng(0)
    model = nn.Linear(3, 1)
    opt = td.optim.SGD(model.parameters(), lr=0.01)
    x = td.tensor(gen.standard_normal((4, 3)), dtype="float32")
    y = td.tensor(gen.standard_normal((4, 1)), dtype="float32")
    total = 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            total = total + loss if leak else total + loss.item()
            if cycle:  # a graph in a reference cycle: alive until the collector runs
                loss.register_hook(lambda g, loss=loss: None)
    return [w for w in caught if issubclass(w.category, td.RetainedGraphWarning)]


def test_retained_graph_warns_in_a_leaky_loop():
    caught = _train(debug.RETAINED_STEPS + 10, leak=True)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert ".item()" in message and ".detach()" in message and "total_loss += loss" in message
    assert caught[0].filename == __file__


def test_retained_graph_silent_in_a_correct_loop():
    assert _train(3 * debug.RETAINED_STEPS, leak=False) == []


def test_retained_graph_silent_when_the_collector_frees_the_graphs():
    gc.disable()  # graphs in reference cycles pile up until check_retained_graph collects them
    try:
        assert _train(3 * debug.RETAINED_STEPS, leak=False, cycle=True) == []
    finally:
        gc.enable()


def test_retained_graph_warns_for_a_list_of_losses():
    gen = np.random.default_rng(0)
    w = td.Parameter(td.tensor(gen.standard_normal(3)))
    opt = td.optim.Adam([w], lr=0.01)
    losses = []
    with pytest.warns(td.RetainedGraphWarning, match=r"losses\.append\(loss\)"):
        for _ in range(debug.RETAINED_STEPS + 2):
            opt.zero_grad()
            loss = (w * w).sum()
            loss.backward()
            opt.step()
            losses.append(loss)
