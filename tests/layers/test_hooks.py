"""Module hooks: forward pre-hooks, forward hooks, full backward hooks and their handles."""

import numpy as np
import pytest

import tinydl as td
from tinydl import layers as nn


def _mlp():
    td.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()


def _x(requires_grad=True):
    return td.tensor(np.random.default_rng(1).standard_normal((5, 3)), requires_grad=requires_grad)


# -- forward hooks ---------------------------------------------------------------------------


def test_hooks_run_in_registration_order_around_forward():
    m, log = nn.Linear(3, 2), []
    m.register_forward_hook(lambda mod, a, out: log.append("post1"))
    m.register_forward_pre_hook(lambda mod, a: log.append("pre1"))
    m.register_forward_hook(lambda mod, a, out: log.append("post2"))
    m.register_forward_pre_hook(lambda mod, a: log.append("pre2"))
    m.register_forward_pre_hook(lambda mod, a: log.append("pre0"), prepend=True)
    m(td.ones(1, 3))
    assert log == ["pre0", "pre1", "pre2", "post1", "post2"]


def test_sub_module_hooks_fire_inside_the_parent_call():
    model, log = _mlp(), []
    for name, mod in model.named_modules():
        mod.register_forward_pre_hook(lambda m, a, n=name: log.append(("pre", n)))
        mod.register_forward_hook(lambda m, a, o, n=name: log.append(("post", n, o.shape)))
    model(_x())
    assert log == [
        ("pre", ""),
        ("pre", "0"), ("post", "0", (5, 4)),
        ("pre", "1"), ("post", "1", (5, 4)),
        ("pre", "2"), ("post", "2", (5, 2)),
        ("post", "", (5, 2)),
    ]  # fmt: skip


def test_hooks_see_the_arguments_and_the_output():
    m, seen = nn.Linear(3, 2), {}
    x = td.ones(4, 3)
    m.register_forward_pre_hook(lambda mod, args: seen.update(pre=(mod, args)))
    m.register_forward_hook(lambda mod, args, out: seen.update(post=(mod, args, out)))
    y = m(x)
    assert seen["pre"][0] is m and seen["pre"][1] == (x,)
    assert seen["post"][1] == (x,) and seen["post"][2] is y


def test_pre_hook_replaces_the_arguments():
    m = nn.Identity()
    m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    m.register_forward_pre_hook(lambda mod, args: args[0] + 1)  # a non-tuple is wrapped
    np.testing.assert_array_equal(m(td.ones(2)).numpy(), [3.0, 3.0])


def test_forward_hook_replaces_the_output_for_the_next_hook_and_the_caller():
    m, seen = nn.Identity(), []
    m.register_forward_hook(lambda mod, args, out: out * 10)
    m.register_forward_hook(lambda mod, args, out: seen.append(out.numpy().tolist()))
    assert m(td.ones(2)).numpy().tolist() == [10.0, 10.0] and seen == [[10.0, 10.0]]


def test_with_kwargs_hooks_get_and_replace_the_keyword_arguments():
    class Scale(nn.Module):
        def forward(self, x, *, factor=1.0):
            return x * factor

    m, seen = Scale(), []
    m.register_forward_pre_hook(
        lambda mod, a, kw: (a, {"factor": kw["factor"] + 1}), with_kwargs=True
    )
    m.register_forward_hook(lambda mod, a, kw, out: seen.append(kw), with_kwargs=True)
    assert m(td.ones(1), factor=2.0).item() == 3.0 and seen == [{"factor": 3.0}]
    m.register_forward_pre_hook(lambda mod, a, kw: "bad", with_kwargs=True)
    with pytest.raises(TypeError, match="args, kwargs"):
        m(td.ones(1), factor=2.0)


def test_a_hook_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        nn.Linear(2, 2).register_forward_hook("not a function")


# -- handles ---------------------------------------------------------------------------------


def test_removed_hooks_do_not_fire_and_remove_twice_is_harmless():
    m, log = nn.Linear(3, 2), []
    h1 = m.register_forward_hook(lambda *a: log.append(1))
    h2 = m.register_forward_pre_hook(lambda *a: log.append(2))
    h3 = m.register_full_backward_hook(lambda *a: log.append(3))
    m(td.ones(1, 3, requires_grad=True)).sum().backward()
    assert sorted(log) == [1, 2, 3]
    for h in (h1, h2, h3):
        h.remove()
        h.remove()
    log.clear()
    m(td.ones(1, 3, requires_grad=True)).sum().backward()
    assert log == []


def test_handles_are_context_managers():
    m, log = nn.Linear(3, 2), []
    with m.register_forward_hook(lambda *a: log.append("in")) as handle:
        m(td.ones(1, 3))
    m(td.ones(1, 3))
    assert log == ["in"] and hasattr(handle, "id")


def test_removing_one_hook_keeps_the_others():
    m, log = nn.Linear(3, 2), []
    handles = [m.register_forward_hook(lambda *a, i=i: log.append(i)) for i in range(3)]
    handles[1].remove()
    m(td.ones(1, 3))
    assert log == [0, 2]


def test_hooks_survive_state_dict_round_trips_without_being_saved(tmp_path):
    model, log = _mlp(), []
    model[0].register_forward_hook(lambda *a: log.append("fwd"))
    model.register_full_backward_hook(lambda *a: log.append("bwd"))
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    td.save(sd, tmp_path / "m.safetensors")
    model.load_state_dict(td.load(tmp_path / "m.safetensors"))
    model(_x()).sum().backward()
    assert log == ["fwd", "bwd"]
    fresh = _mlp()
    fresh.load_state_dict(td.load(tmp_path / "m.safetensors"))
    fresh(_x()).sum().backward()
    assert log == ["fwd", "bwd"]  # the hooks stayed with their model


# -- full backward hooks ---------------------------------------------------------------------


def test_backward_hook_gets_the_gradients_autograd_computes():
    model, got = _mlp(), {}
    lin = model[2]
    lin.register_full_backward_hook(lambda m, gi, go: got.update(gi=gi, go=go))
    x = _x()
    h = model[1](model[0](x))
    y = lin(h)
    loss = (y * y).sum()
    dh, dy = td.grad(loss, [h, y], retain_graph=True)
    loss.backward()
    assert len(got["gi"]) == 1 and len(got["go"]) == 1
    np.testing.assert_allclose(got["gi"][0].numpy(), dh.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["go"][0].numpy(), dy.numpy(), rtol=1e-12)


def test_backward_hook_replaces_grad_input():
    m = nn.Linear(3, 2).double()
    x = _x()
    m(x).sum().backward()
    plain = x.grad.numpy().copy()
    x.grad = None
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0] * 3,))
    m(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * plain)
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0], gi[0]))
    with pytest.raises(td.BackwardError, match="2 gradients for 1 inputs"):
        m(x).sum().backward()


def test_backward_hook_without_input_grad_gets_none_and_must_return_none():
    m, got = nn.Linear(3, 2).double(), []
    handle = m.register_full_backward_hook(lambda mod, gi, go: got.append((gi, go)))
    m(_x(requires_grad=False)).sum().backward()
    ((gi, go),) = got
    assert gi == (None,) and go[0].shape == (5, 2)
    assert m.weight.grad is not None  # the parameters still get theirs
    handle.remove()
    m.register_full_backward_hook(lambda mod, gi, go: (td.ones(5, 3),))
    with pytest.raises(td.BackwardError, match="no input requires grad"):
        m(_x(requires_grad=False)).sum().backward()


class _TwoInTwoOut(nn.Module):
    def forward(self, a, b, c, scale):
        return a * b * scale, (a + c).sum(), 7


def test_several_inputs_and_outputs_give_none_where_there_is_no_gradient():
    m, got = _TwoInTwoOut(), []
    m.register_full_backward_hook(lambda mod, gi, go: got.append((gi, go)))
    a = td.tensor([1.0, 2.0], requires_grad=True)
    b = td.tensor([3.0, 4.0])  # no grad
    c = td.tensor([5.0, 6.0], requires_grad=True)
    p, q, n = m(a, b, c, 2.0)
    assert n == 7 and not b.requires_grad
    p.sum().backward()  # q unused: its grad_output and c's grad_input are None
    ((gi, go),) = got
    assert len(gi) == 4 and gi[1] is None and gi[2] is None and gi[3] is None
    np.testing.assert_array_equal(gi[0].numpy(), [6.0, 8.0])
    assert len(go) == 3 and go[1] is None and go[2] is None
    np.testing.assert_array_equal(go[0].numpy(), [1.0, 1.0])


def test_backward_hook_fires_once_per_call_and_not_under_no_grad():
    m, calls = nn.Linear(3, 3).double(), []
    m.register_full_backward_hook(lambda mod, gi, go: calls.append(gi[0].shape))
    x = _x()
    m(m(x)).sum().backward()
    assert calls == [(5, 3), (5, 3)]
    with td.no_grad():
        y = m(x)
    assert not y.requires_grad


def test_backward_hooks_of_a_call_are_those_registered_at_the_call():
    """As PyTorch: removing the handle after forward still reports that forward."""
    m, calls = nn.Linear(3, 2).double(), []
    handle = m.register_full_backward_hook(lambda *a: calls.append(1))
    y = m(_x())
    handle.remove()
    y.sum().backward()
    m(_x()).sum().backward()
    assert calls == [1]


def test_backward_hook_output_is_differentiable_again():
    m = nn.Linear(3, 1).double()
    m.register_full_backward_hook(lambda mod, gi, go: None)
    x = _x()
    (gx,) = td.grad((m(x) ** 2).sum(), x, create_graph=True)
    (ggx,) = td.grad(gx.sum(), x)
    w = m.weight.detach().numpy()  # d/dx sum_i 2 (x_i.w + b) w = 2 w w^T per row
    np.testing.assert_allclose(ggx.numpy(), np.tile(2 * w.sum() * w, (5, 1)), rtol=1e-12)


# -- against PyTorch -------------------------------------------------------------------------


def _torch_copy(torch, model):
    layers = []
    for mod in model:
        if isinstance(mod, nn.Linear):
            t = torch.nn.Linear(mod.in_features, mod.out_features).double()
            t.weight.data = torch.tensor(mod.weight.detach().numpy())
            t.bias.data = torch.tensor(mod.bias.detach().numpy())
            layers.append(t)
        else:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


# NOTE: PyTorch warns that it fires the hook on the outputs when no input requires grad
@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")
@pytest.mark.parametrize("x_grad", [True, False], ids=["x-grad", "x-no-grad"])
@pytest.mark.parametrize("which", ["linear", "sequential"])
def test_backward_hook_matches_pytorch(which, x_grad):
    torch = pytest.importorskip("torch")
    ours = _mlp()
    theirs = _torch_copy(torch, ours)
    if which == "linear":
        ours, theirs = ours[0], theirs[0]
    got, want = [], []
    ours.register_full_backward_hook(lambda m, gi, go: got.append((gi, go)))
    theirs.register_full_backward_hook(lambda m, gi, go: want.append((gi, go)))
    x = _x(x_grad)
    xt = torch.tensor(x.detach().numpy(), requires_grad=x_grad)
    (ours(x) ** 2).sum().backward()
    (theirs(xt) ** 2).sum().backward()
    assert len(got) == len(want) == 1
    for mine, ref in zip(got[0], want[0]):
        assert len(mine) == len(ref)
        for a, b in zip(mine, ref):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


# -- traversal as PyTorch --------------------------------------------------------------------


def _nested(lib):
    shared = lib.Linear(2, 2)
    inner = lib.Sequential(lib.Linear(2, 2), shared)
    return lib.Sequential(inner, lib.ReLU(), shared, lib.Sequential(lib.ReLU()))


def test_named_modules_and_apply_match_pytorch():
    torch = pytest.importorskip("torch")
    ours, theirs = _nested(nn), _nested(torch.nn)
    names = [n for n, _ in ours.named_modules()]
    assert names == [n for n, _ in theirs.named_modules()]
    assert names[0] == "" and len(set(map(id, ours.modules()))) == len(names)
    order, ref = [], []
    ours.apply(lambda m: order.append(type(m).__name__))
    theirs.apply(lambda m: ref.append(type(m).__name__))
    assert order == ref
    assert [n for n, _ in ours.named_modules(prefix="net")][:2] == ["net", "net.0"]


def test_backward_hooks_run_in_order_and_each_sees_the_previous_replacement():
    m, log = nn.Linear(3, 2).double(), []
    m.register_full_backward_hook(lambda mod, gi, go: log.append(("a", gi[0].numpy().copy())))
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0] * 2,))
    m.register_full_backward_hook(lambda mod, gi, go: log.append(("b", gi[0].numpy().copy())))
    m.register_full_backward_hook(lambda mod, gi, go: log.append(("first", None)), prepend=True)
    m(_x()).sum().backward()
    assert [name for name, _ in log] == ["first", "a", "b"]
    np.testing.assert_allclose(log[2][1], 2 * log[1][1])
