"""The Optimizer base through its subclasses: groups, state, zero_grad, state dicts, in place."""

import inspect

import numpy as np
import pytest

import tinydl as td
from tinydl import optim
from tinydl.optim import OptimizerStateError

ALL = {
    "sgd": (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd_damp": (optim.SGD, dict(lr=0.05, momentum=0.5, dampening=0.2, maximize=False)),
    "adam": (optim.Adam, dict(lr=0.05, amsgrad=True, weight_decay=0.01)),
    "adamw": (optim.AdamW, dict(lr=0.05)),
    "rmsprop": (optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    "adagrad": (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
}


def _make(name):
    cls, kw = ALL[name]
    return lambda ps: cls(ps, **kw)


@pytest.mark.parametrize("name", list(ALL))
def test_updates_in_place_in_float32(backend, problem, name):
    ps = [td.Parameter(backend.tensor(a.astype(np.float32))) for a in problem.init]
    opt = _make(name)(ps)
    arrays = [p.data for p in ps]
    views = [p.data[..., :1] for p in ps]
    states = None
    for _ in range(5):
        for p, g in zip(ps, problem.grads(*[backend.numpy(p).astype(np.float64) for p in ps])):
            p.grad = backend.tensor(g.astype(np.float32))
        opt.step()
        if states is None:
            states = {(i, k): v for i, p in enumerate(ps) for k, v in opt.state[p].items()}
    for p, a, v in zip(ps, arrays, views):
        assert p.data is a and backend.xp.shares_memory(p.data, v) and p.data.dtype == np.float32
    for (i, k), v in states.items():
        now = opt.state[ps[i]][k]
        assert now is v or k == "step", k  # state arrays are updated in place too
        assert k == "step" or now.dtype == np.float32


@pytest.mark.parametrize("name", list(ALL))
def test_float32_follows_float64(backend, problem, name):
    lo = problem.run_tinydl(_make(name), steps=10, dtype=np.float32, backend=backend)
    hi = problem.run_tinydl(_make(name), steps=10, backend=backend)
    for a, b in zip(lo[-1], hi[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", list(ALL))
def test_state_dict_round_trip_resumes_the_same_trajectory(backend, problem, name):
    full = problem.run_tinydl(_make(name), steps=20, backend=backend)
    ps = [td.Parameter(backend.tensor(a)) for a in problem.init]
    opt = _make(name)(ps)

    def take(opt, ps, n):
        for _ in range(n):
            for p, g in zip(ps, problem.grads(*[backend.numpy(p) for p in ps])):
                p.grad = backend.tensor(g)
            opt.step()

    take(opt, ps, 10)
    saved = opt.state_dict()
    take(opt, ps, 1)  # the saved arrays are a snapshot, not views of the live state
    # a checkpoint file gives numbers back as 0-d arrays and lists as arrays
    on_disk = {
        "state": {
            str(k): {n: np.asarray(v) for n, v in s.items()} for k, s in saved["state"].items()
        },
        "param_groups": [
            {k: (np.asarray(v) if k == "params" else v) for k, v in g.items()}
            for g in saved["param_groups"]
        ],
    }
    ps2 = [td.Parameter(backend.tensor(a)) for a in full[9]]
    opt2 = _make(name)(ps2)
    opt2.load_state_dict(on_disk)
    take(opt2, ps2, 10)
    for a, b in zip([backend.numpy(p) for p in ps2], full[-1]):
        np.testing.assert_array_equal(a, b)


def test_state_dict_layout_matches_torch(torch):
    ps = [td.Parameter(td.zeros(2)), td.Parameter(td.zeros(3)), td.Parameter(td.zeros(1))]
    tps = [torch.nn.Parameter(torch.zeros(n)) for n in (2, 3, 1)]
    ours = optim.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.1}], amsgrad=True)
    theirs = torch.optim.Adam([{"params": tps[:2]}, {"params": tps[2:], "lr": 0.1}], amsgrad=True)
    for p, q in zip(ps[1:], tps[1:]):  # the first parameter has no gradient
        p.grad, q.grad = td.ones(*p.shape), torch.ones(q.shape)
    ours.step()
    theirs.step()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["state"].keys() == b["state"].keys() == {1, 2}
    assert a["state"][1].keys() == b["state"][1].keys()
    assert isinstance(a["state"][1]["exp_avg"], np.ndarray)
    assert [g["params"] for g in a["param_groups"]] == [g["params"] for g in b["param_groups"]]
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert set(ga) <= set(gb) and ga["lr"] == gb["lr"]


def test_load_state_dict_mismatches_name_what_differs():
    ps = [td.Parameter(td.zeros(2)), td.Parameter(td.zeros(3))]
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    for p in ps:
        p.grad = td.ones(*p.shape)
    opt.step()
    saved = opt.state_dict()
    two_groups = optim.SGD([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1)
    with pytest.raises(OptimizerStateError, match="has 2 parameter group.*state dict has 1"):
        two_groups.load_state_dict(saved)
    with pytest.raises(ValueError, match="group 0 has 1 parameter.*but 2 in the state dict"):
        optim.SGD(ps[:1], lr=0.1).load_state_dict(saved)
    swapped = optim.SGD([ps[1], ps[0]], lr=0.1, momentum=0.9)
    with pytest.raises(OptimizerStateError, match=r"'momentum_buffer' of parameter 0.*\(2,\)"):
        swapped.load_state_dict(saved)
    with pytest.raises(OptimizerStateError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_load_state_dict_restores_hyper_parameters_and_keeps_params():
    ps = [td.Parameter(td.zeros(2))]
    a = optim.SGD(ps, lr=0.1)
    a.param_groups[0]["lr"] = 0.025
    b = optim.SGD([td.Parameter(td.zeros(2))], lr=0.1)
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["lr"] == 0.025
    assert b.param_groups[0]["params"][0] is not ps[0]


def test_parameter_groups_with_their_own_lr_match_torch(backend, torch, problem, same_trajectory):
    def ours(ps):
        return optim.Adam([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:]}], lr=0.01)

    def theirs(ps):
        groups = [{"params": ps[:1], "lr": 0.1}, {"params": ps[1:]}]
        return torch.optim.Adam(groups, lr=0.01, foreach=False)

    same_trajectory(problem.run_tinydl(ours, backend=backend), problem.run_torch(theirs))

    def ours_sgd(ps):
        opt = optim.SGD(ps[:1], lr=0.1, momentum=0.9)
        opt.add_param_group({"params": ps[1:], "lr": 0.02, "nesterov": True})
        return opt

    def theirs_sgd(ps):
        opt = torch.optim.SGD(ps[:1], lr=0.1, momentum=0.9, foreach=False)
        opt.add_param_group({"params": ps[1:], "lr": 0.02, "nesterov": True})
        return opt

    same_trajectory(problem.run_tinydl(ours_sgd, backend=backend), problem.run_torch(theirs_sgd))


def test_parameter_groups_closed_form(backend):
    a, b = td.Parameter(backend.tensor([1.0])), td.Parameter(backend.tensor([1.0]))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.0}], lr=0.5)
    assert opt.param_groups[1]["lr"] == 0.0 and opt.param_groups[0]["lr"] == 0.5
    a.grad, b.grad = backend.tensor([1.0]), backend.tensor([1.0])
    opt.step()
    assert a.tolist() == [0.5] and b.tolist() == [1.0]


def test_zero_grad(backend):
    p = td.Parameter(td.ones(3, device=backend.name))
    opt = optim.SGD([p], lr=0.1)
    p.grad = td.ones(3, device=backend.name)
    g = p.grad.data
    opt.zero_grad(set_to_none=False)
    assert p.grad.data is g and not backend.numpy(g).any()
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # parameters without a gradient are skipped
    np.testing.assert_array_equal(backend.numpy(p), 1.0)


def test_step_runs_the_closure_with_grad_enabled(backend):
    p = td.Parameter(backend.tensor([2.0]))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with td.no_grad():
        loss = opt.step(closure)
    assert float(loss) == 4.0 and p.tolist() == [1.0]


def test_bad_params_are_rejected():
    p = td.Parameter(td.zeros(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="wrap it in a list"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(ValueError, match="SGD: invalid learning rate -1"):
        opt.add_param_group({"params": [td.Parameter(td.zeros(1))], "lr": -1})
    q = td.Parameter(td.zeros(2))
    q.grad = td.zeros(3)
    with pytest.raises(td.ShapeError, match=r"gradient of shape \(3,\)"):
        optim.Adam([q]).step()


def test_generators_of_parameters_are_accepted():
    ps = [td.Parameter(td.zeros(2)) for _ in range(3)]
    opt = optim.Adam(p for p in ps)
    assert all(a is b for a, b in zip(opt.param_groups[0]["params"], ps, strict=True))
    assert "Adam (" in repr(opt) and "lr: 0.001" in repr(opt)


# ----------------------------------------------------------------------------- hyper-parameters
CLASSES = [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_signature_is_the_one_source_of_the_defaults(cls):
    p = td.Parameter(td.zeros(1))
    params = list(inspect.signature(cls).parameters.values())[1:]  # after `params`
    assert cls([p]).defaults == {q.name: q.default for q in params}
    doc = inspect.getdoc(optim.Adam if cls is optim.AdamW else cls)  # AdamW: "Adam's arguments"
    for q in params:
        assert f"\n{q.name} : " in doc, f"{cls.__name__}: {q.name} is not documented"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_signature_is_keyword_and_position_compatible_with_torch(torch, cls):
    ours = list(inspect.signature(cls).parameters.values())
    theirs = inspect.signature(getattr(torch.optim, cls.__name__)).parameters
    for i, q in enumerate(ours):
        t = theirs[q.name]  # torch takes the keyword too, with the same default
        assert q.default == t.default and t.kind is not t.POSITIONAL_ONLY, q.name
        if q.kind is q.POSITIONAL_OR_KEYWORD:  # and in the same place
            assert list(theirs).index(q.name) == i and t.kind is t.POSITIONAL_OR_KEYWORD, q.name


def test_adamw_takes_adams_arguments_in_the_same_places():
    p = td.Parameter(td.zeros(1))
    got = optim.AdamW([p], 0.01, [0.8, 0.9], 1e-6, 0.05, True, maximize=True).defaults
    assert got == dict(
        lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05, amsgrad=True, maximize=True
    )
    with pytest.raises(
        TypeError, match=r"AdamW.__init__\(\) got an unexpected keyword .*'nesterov'"
    ):
        optim.AdamW([p], nesterov=True)


def test_with_defaults_refuses_an_unknown_parameter():
    with pytest.raises(TypeError, match="has no parameter"):
        optim.optimizer.with_defaults(optim.Adam.__init__, momentum=0.9)


def test_update_gets_the_groups_hyper_parameters_by_name(monkeypatch):
    """A group's hyper-parameter reaches the update function under its own name."""
    seen = {}

    def sgd_update(param, grad, buf, *, lr, momentum, dampening, nesterov, weight_decay,
                   maximize, work):  # fmt: skip
        seen.update(lr=lr, momentum=momentum, nesterov=nesterov, maximize=maximize)

    monkeypatch.setattr(optim.sgd, "sgd_update", sgd_update)
    p = td.Parameter(td.zeros(2))
    p.grad = td.ones(2)
    opt = optim.SGD([p], lr=0.5, momentum=0.25, nesterov=True)
    opt.param_groups[0]["lr"] = 0.125  # as a scheduler does
    opt.step()
    assert seen == dict(lr=0.125, momentum=0.25, nesterov=True, maximize=False)
