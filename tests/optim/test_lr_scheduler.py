import math
import warnings

import numpy as np
import pytest

import tinydl as td
from tinydl import optim
from tinydl.optim import lr_scheduler as sched

CASES = {
    "step": ("StepLR", dict(step_size=7, gamma=0.5)),
    "multistep": ("MultiStepLR", dict(milestones=[3, 10, 10, 25], gamma=0.3)),
    "exponential": ("ExponentialLR", dict(gamma=0.9)),
    "cosine": ("CosineAnnealingLR", dict(T_max=12, eta_min=0.001)),
    "cosine_default": ("CosineAnnealingLR", dict(T_max=30)),
    "linear": ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=8)),
    "linear_down": ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=10)),
    "linear_default": ("LinearLR", dict()),
    "onecycle": ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=31)),
    "onecycle_linear_3phase": (
        "OneCycleLR",
        dict(max_lr=1.0, total_steps=31, anneal_strategy="linear", three_phase=True),
    ),
    "onecycle_epochs": (
        "OneCycleLR",
        dict(max_lr=0.3, epochs=3, steps_per_epoch=11, pct_start=0.25, div_factor=10.0),
    ),
}


def _groups(params):
    return [{"params": params[:1]}, {"params": params[1:], "lr": 0.05}]


def _ours(name, kwargs, opt_cls=optim.SGD, steps=30, **opt_kw):
    ps = [td.Parameter(td.zeros(2)), td.Parameter(td.zeros(3))]
    opt = opt_cls(_groups(ps), lr=0.1, **opt_kw)
    s = getattr(sched, name)(opt, **kwargs)
    lrs, moms = [s.get_last_lr()], [_momentum(opt)]
    for _ in range(steps):
        opt.step()
        s.step()
        lrs.append(s.get_last_lr())
        moms.append(_momentum(opt))
    return lrs, moms


def _momentum(opt):
    g = opt.param_groups
    return [x["betas"][0] if "betas" in x else x.get("momentum") for x in g]


def _theirs(torch, name, kwargs, opt_name="SGD", steps=30, **opt_kw):
    ps = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    opt = getattr(torch.optim, opt_name)(_groups(ps), lr=0.1, **opt_kw)
    s = getattr(torch.optim.lr_scheduler, name)(opt, **kwargs)
    lrs, moms = [s.get_last_lr()], [_momentum(opt)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.step()
            s.step()
            lrs.append(s.get_last_lr())
            moms.append(_momentum(opt))
    return lrs, moms


@pytest.mark.parametrize("case", list(CASES))
def test_lr_sequence_matches_torch(torch, case):
    name, kwargs = CASES[case]
    steps = 30 if "epochs" not in kwargs else 32
    ours, our_m = _ours(name, kwargs, momentum=0.9, steps=steps)
    theirs, their_m = _theirs(torch, name, kwargs, momentum=0.9, steps=steps)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.array(our_m), np.array(their_m), rtol=1e-12)


def test_onecycle_cycles_adam_beta1_like_torch(torch):
    kwargs = dict(max_lr=0.01, total_steps=20)
    ours, our_m = _ours("OneCycleLR", kwargs, opt_cls=optim.Adam, steps=20)
    theirs, their_m = _theirs(torch, "OneCycleLR", kwargs, opt_name="Adam", steps=20)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-12)
    np.testing.assert_allclose(np.array(our_m), np.array(their_m), rtol=1e-12)


def _one(lr=0.1, **kw):
    return optim.SGD([td.Parameter(td.zeros(2))], lr=lr, **kw)


def test_closed_forms_without_torch():
    for t_max, eta in [(10, 0.0), (7, 0.01)]:
        s = sched.CosineAnnealingLR(_one(), T_max=t_max, eta_min=eta)
        for t in range(1, 25):
            s.step()
            want = eta + (0.1 - eta) * (1 + math.cos(math.pi * t / t_max)) / 2
            assert s.get_last_lr()[0] == pytest.approx(want, rel=1e-12, abs=1e-15)
    s = sched.StepLR(_one(), step_size=3, gamma=0.5)
    for t in range(1, 20):
        s.step()
        assert s.get_last_lr()[0] == pytest.approx(0.1 * 0.5 ** (t // 3), rel=1e-12)
    s = sched.LinearLR(_one(), start_factor=0.25, total_iters=4)
    seq = [s.get_last_lr()[0]] + [(s.step(), s.get_last_lr()[0])[1] for _ in range(6)]
    np.testing.assert_allclose(seq, 0.1 * np.array([0.25, 0.4375, 0.625, 0.8125, 1, 1, 1]))


def test_onecycle_endpoints_and_defaults():
    opt = _one(momentum=0.9)
    s = sched.OneCycleLR(opt, max_lr=1.0, total_steps=100)
    assert s.get_last_lr()[0] == pytest.approx(1.0 / 25)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    lrs = [s.get_last_lr()[0]]
    for _ in range(99):
        s.step()
        lrs.append(s.get_last_lr()[0])
    assert int(np.argmax(lrs)) == 29 and max(lrs) == pytest.approx(1.0)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4)
    s.step()  # step 100 of 100 is still allowed, as in PyTorch
    with pytest.raises(ValueError, match="total_steps is 100"):
        s.step()


def test_scheduler_state_dict_resumes_the_same_sequence():
    a = sched.CosineAnnealingLR(_one(), T_max=9)
    for _ in range(5):
        a.step()
    saved = a.state_dict()
    assert "optimizer" not in saved
    opt_b = _one()
    opt_b.param_groups[0]["lr"] = a.optimizer.param_groups[0]["lr"]
    b = sched.CosineAnnealingLR(opt_b, T_max=9)
    b.load_state_dict(saved)
    for _ in range(10):
        a.step()
        b.step()
        assert a.get_last_lr() == b.get_last_lr()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda o: sched.StepLR(o, step_size=0), "StepLR: invalid step_size 0"),
        (lambda o: sched.CosineAnnealingLR(o, T_max=0), "invalid T_max 0"),
        (lambda o: sched.LinearLR(o, start_factor=0.0), "invalid start_factor"),
        (lambda o: sched.LinearLR(o, end_factor=1.5), "invalid end_factor"),
        (lambda o: sched.OneCycleLR(o, max_lr=0.1), "give total_steps"),
        (lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), "pct_start"),
        (lambda o: sched.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=10), "one per group"),
        (lambda o: sched.OneCycleLR(o, 0.1, 10, anneal_strategy="exp"), "anneal_strategy"),
        (lambda o: sched.StepLR(o, step_size=2, last_epoch=3), "initial_lr"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(_one(momentum=0.9))


def test_onecycle_needs_momentum_to_cycle():
    opt = optim.Adagrad([td.Parameter(td.zeros(2))])
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
