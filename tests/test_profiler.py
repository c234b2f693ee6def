"""``td.profile()``: what it counts (calls, bytes, passes), that it stays off outside its block
and its thread, and that its times add up to the wall time of the steps it profiled."""

import threading
import time

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers, optim, profiler
from tinydl.cli import main as cli_main
from tinydl.data import MNIST, DatasetNotFoundError


def _t(*shape, grad=False, seed=0):
    rng = np.random.default_rng(seed)
    return td.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=grad)


def _rows(prof) -> dict:
    return {(r["name"], r["pass"]): r for r in prof.rows()}


def _mlp_step(opt_cls=optim.Adam):
    """Two layers written with ``@``, ``+`` and ``relu``: a graph whose ops we can count."""
    w1, b1, w2, b2 = _t(8, 16, grad=True), _t(16, grad=True), _t(16, 3, grad=True), _t(3, grad=True)
    x, y = _t(4, 8, seed=1), td.tensor(np.array([0, 1, 2, 0]))
    opt = opt_cls([w1, b1, w2, b2], lr=0.01)
    with td.profile() as prof:
        loss = F.cross_entropy(F.relu(x @ w1 + b1) @ w2 + b2, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prof


def test_counts_of_a_two_layer_step():
    rows = _rows(_mlp_step())
    assert rows[("MatMul", "forward")]["calls"] == 2
    assert rows[("Add", "forward")]["calls"] == 2
    assert rows[("Relu", "forward")]["calls"] == 1
    assert rows[("CrossEntropy", "forward")]["calls"] == 1
    for name, calls in {"MatMul": 2, "Add": 2, "Relu": 1, "CrossEntropy": 1}.items():
        assert rows[(f"{name}Backward", "backward")]["calls"] == calls
    # ops that backward functions run are backward rows, never forward ones
    forward = {name for name, pass_ in rows if pass_ == "forward"}
    assert forward == {"MatMul", "Add", "Relu", "CrossEntropy"}
    assert rows[("Adam.step", "optimizer")]["calls"] == 1
    assert rows[("Adam.zero_grad", "optimizer")]["calls"] == 1
    assert {pass_ for _, pass_ in rows} == {"forward", "backward", "optimizer"}
    for r in rows.values():
        assert r["total_s"] >= 0 and r["mean_s"] == pytest.approx(r["total_s"] / r["calls"])


def test_optimizer_rows_are_named_by_class():
    rows = _rows(_mlp_step(optim.SGD))
    assert ("SGD.step", "optimizer") in rows and ("Adam.step", "optimizer") not in rows


def test_bytes_are_the_new_arrays_nbytes():
    a, b = _t(30, 40, grad=True), _t(30, 40, seed=1)
    with td.profile() as prof:
        c = a * b  # a new array
        v = c.reshape(40, 30)  # a view of c: nothing new
        e = F.exp(v)
        e.backward(td.ones_like(e))
    rows = _rows(prof)
    assert rows[("Mul", "forward")]["bytes"] == c.data.nbytes
    assert rows[("Reshape", "forward")]["bytes"] == 0
    assert rows[("Exp", "forward")]["bytes"] == e.data.nbytes
    # backward allocates the gradient of e's input (and of c's), each (30, 40) float32 once,
    # plus b's gradient array inside MulBackward: whatever the split over rows, no double count
    backward = sum(r["bytes"] for (_, p), r in rows.items() if p == "backward")
    assert backward % a.data.nbytes == 0 and 2 * a.data.nbytes <= backward <= 3 * a.data.nbytes


def test_nothing_is_recorded_after_the_block_or_in_other_threads():
    a = _t(3, 3)
    with td.profile() as prof:
        a + a
        seen = []
        worker = threading.Thread(target=lambda: seen.append(a * a))
        worker.start()
        worker.join()
    a + a
    (a * a).sum()
    rows = _rows(prof)
    assert rows[("Add", "forward")]["calls"] == 1 and ("Mul", "forward") not in rows
    assert profiler._open == 0 and profiler._current.get() is None
    assert seen and rows == _rows(prof)


def test_nested_profiles_are_an_error_and_a_profile_is_used_once():
    a = _t(2, 2)
    with td.profile() as outer:
        with pytest.raises(RuntimeError, match="already open"):
            with td.profile():
                pass
        a + a
    assert _rows(outer)[("Add", "forward")]["calls"] == 1
    with pytest.raises(RuntimeError, match="one with-block"):
        with outer:
            pass
    assert profiler._open == 0


def test_an_exception_leaves_the_profiler_off_and_a_failing_op_leaves_no_frame():
    a, b = _t(2, 3), _t(4, 5)
    with pytest.raises(td.ShapeError):
        with td.profile() as prof:
            a + a
            try:
                a @ b  # raises inside the op: its frame must not adopt the next ops
            except td.ShapeError:
                pass
            a * a
            assert prof._stack == []
            a @ b
    assert profiler._open == 0 and profiler._current.get() is None
    rows = _rows(prof)
    assert rows[("Mul", "forward")]["calls"] == 1 and rows[("Add", "forward")]["calls"] == 1
    assert ("MatMul", "forward") not in rows  # an op that raised is not recorded
    x = _t(3, grad=True)
    with td.profile() as prof:
        with pytest.raises(td.BackwardError):
            (x * x).backward()  # not a scalar: raises before any node runs
        with pytest.raises(td.ShapeError):
            x @ b
        (x * x).sum().backward()
    assert profiler._open == 0
    assert {p for _, p in _rows(prof)} == {"forward", "backward"}
    assert _rows(prof)[("MulBackward", "backward")]["calls"] == 1
    with td.profile() as again:  # a new profile opens normally
        a + a
    assert _rows(again)[("Add", "forward")]["calls"] == 1


def test_to_dict_and_table():
    prof = _mlp_step()
    d = prof.to_dict()
    assert set(d) == {"wall_s", "ops_s", "other_s", "passes", "synchronized", "rows"}
    assert list(d["passes"]) == ["forward", "backward", "optimizer", "data"]
    assert d["passes"]["data"] == 0 and sum(d["passes"].values()) == pytest.approx(d["ops_s"])
    forward = sum(r["total_s"] for r in d["rows"] if r["pass"] == "forward")
    assert d["passes"]["forward"] == pytest.approx(forward)
    assert d["synchronized"] is False
    assert d["ops_s"] == pytest.approx(sum(r["total_s"] for r in d["rows"]))
    assert d["ops_s"] + d["other_s"] == pytest.approx(d["wall_s"])
    totals = [r["total_s"] for r in d["rows"]]
    assert totals == sorted(totals, reverse=True)
    assert sum(r["share"] for r in d["rows"]) == pytest.approx(d["ops_s"] / d["wall_s"])
    table = prof.table(top=3)
    lines = table.splitlines()
    assert lines[0].split() == ["name", "pass", "calls", "total", "ms", "mean", "us", "share", "MB"]
    assert lines[2].split()[0] == d["rows"][0]["name"]
    assert f"({len(d['rows']) - 3} more rows)" in table and "(other)" in table
    assert lines[-2].startswith("total") and "100.0%" in lines[-2]
    assert str(sum(r["calls"] for r in d["rows"])) in lines[-2].split()
    assert lines[-1].startswith("by pass: forward ") and "optimizer" in lines[-1]
    by_calls = [r["calls"] for r in prof.rows(sort="calls")]
    assert by_calls == sorted(by_calls, reverse=True)
    with pytest.raises(ValueError, match="sort must be"):
        prof.table(sort="speed")


def test_sync_runs_around_every_timed_call(monkeypatch):
    calls = []
    monkeypatch.setattr(profiler.cupy_backend, "synchronize", lambda device=None: calls.append(1))
    a = _t(2, 2)
    with td.profile():  # NumPy arrays: no synchronisation
        a + a
    assert calls == []
    with td.profile(sync=True) as prof:
        a + a
        a * a
    assert len(calls) == 2 + 2 * 2  # the block's two ends and each op's two
    assert prof.to_dict()["synchronized"] and "synchronised" in prof.table()


def _steps(model, opt, batches):
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_the_numbers_add_up_over_cnn_steps():
    td.manual_seed(0)
    model = layers.MnistCNN()
    opt = optim.Adam(model.parameters())
    rng = np.random.default_rng(0)
    batches = [
        (td.tensor(rng.standard_normal((16, 1, 28, 28)).astype(np.float32)),
         td.tensor(rng.integers(0, 10, 16)))
        for _ in range(4)
    ]  # fmt: skip
    _steps(model, opt, batches[:1])  # warm-up: Numba compiles here
    start = time.perf_counter()
    with td.profile() as prof:
        _steps(model, opt, batches[1:])
    wall = time.perf_counter() - start
    d = prof.to_dict()
    assert d["ops_s"] <= d["wall_s"]  # exclusive times: nothing counted twice
    table_total = sum(r["total_s"] for r in d["rows"]) + d["other_s"]
    assert table_total == pytest.approx(wall, rel=0.10)
    assert d["ops_s"] >= 0.75 * wall, prof.table()  # the ops cover most of the steps
    rows = _rows(prof)
    assert rows[("Conv2d", "forward")]["calls"] == 3 * 4
    assert rows[("Conv2dBackward", "backward")]["calls"] == 3 * 4
    assert rows[("Adam.step", "optimizer")]["calls"] == 3


def _have_mnist() -> bool:
    try:
        MNIST(train=True)
        return True
    except DatasetNotFoundError:
        return False


needs_mnist = pytest.mark.skipif(not _have_mnist(), reason="MNIST is not in $TINYDL_DATA")


@needs_mnist
def test_cli_train_profile_prints_the_table_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "mlp", "--limit", "400", "--batch-size", "64", "--out", str(out)]
    assert cli_main([*argv, "--profile", "3"]) == 0
    text = capsys.readouterr().out
    assert "profile of 3 training steps of mlp (batch 64" in text and "warm-up" in text
    assert "Nothing was written" in text and not out.exists()
    for row in ("Adam.step", "DataLoader.next", "LinearBackward", "(other)"):
        assert row in text
    assert " forward " in text and " backward " in text and " data " in text
    assert cli_main([*argv, "--profile", "9"]) == 1  # 400 images: 6 batches of 64
    assert "--profile 9 needs 10 batches" in capsys.readouterr().err


class _Fails(td.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        raise ArithmeticError("a backward that fails")


def test_a_backward_that_raises_ends_its_node():
    x = _t(3, grad=True)
    with td.profile() as prof:
        with pytest.raises(ArithmeticError):
            _Fails.apply(x).sum().backward()
        assert prof._stack == []
        x + x
    rows = _rows(prof)
    assert rows[("_FailsBackward", "backward")]["calls"] == 1
    assert rows[("Add", "forward")]["calls"] == 1


def test_ops_inside_a_region_take_its_pass_and_leave_it_their_time():
    a = _t(200, 200)
    with td.profile() as prof:
        with profiler.region(a, "update", "optimizer"):
            a @ a
        a @ a
    rows = _rows(prof)
    assert rows[("MatMul", "optimizer")]["calls"] == 1 and rows[("MatMul", "forward")]["calls"] == 1
    region = rows[("Tensor.update", "optimizer")]
    assert region["calls"] == 1 and region["total_s"] < rows[("MatMul", "optimizer")]["total_s"]
    assert profiler.region(a, "update", "optimizer") is profiler._OFF  # no profile: a no-op
