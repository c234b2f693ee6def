import itertools

import numpy as np
import pytest

import tinydl as td
from tinydl.optim import Adam, AdamW, adam_update

GRID = [
    dict(betas=b, weight_decay=wd, amsgrad=a, maximize=mx)
    for b, wd, a, mx in itertools.product(
        [(0.9, 0.999), (0.3, 0.9)], [0.0, 0.1], [False, True], [False, True]
    )
]


def _ids(o):
    return ",".join(f"{k}={v}" for k, v in o.items())


@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
@pytest.mark.parametrize("opts", GRID, ids=_ids)
def test_trajectory_matches_torch(backend, torch, problem, same_trajectory, cls, opts):
    sign = -1.0 if opts["maximize"] else 1.0
    ours_cls = {"Adam": Adam, "AdamW": AdamW}[cls]
    theirs_cls = getattr(torch.optim, cls)
    ours = problem.run_tinydl(lambda ps: ours_cls(ps, lr=0.05, **opts), sign=sign, backend=backend)
    theirs = problem.run_torch(lambda ps: theirs_cls(ps, lr=0.05, foreach=False, **opts), sign=sign)
    same_trajectory(ours, theirs)


def test_adamw_default_weight_decay_is_pytorchs():
    p = td.Parameter(td.zeros(1))
    assert AdamW([p]).defaults["weight_decay"] == 0.01
    assert Adam([p]).defaults["weight_decay"] == 0.0


@pytest.mark.parametrize("amsgrad", [False, True])
def test_constant_gradient_closed_form(backend, amsgrad):
    # With g = c every step, m_hat = c and v_hat = c^2, so each step moves lr * c / (|c| + eps).
    c, lr, eps, steps = np.array([0.5, -2.0]), 0.01, 1e-8, 25
    p = td.Parameter(backend.tensor([1.0, 1.0], dtype="float64"))
    opt = Adam([p], lr=lr, eps=eps, amsgrad=amsgrad)
    for _ in range(steps):
        p.grad = backend.tensor(c)
        opt.step()
    expected = 1.0 - steps * lr * c / (np.abs(c) + eps)
    np.testing.assert_allclose(backend.numpy(p), expected, rtol=1e-12)
    assert opt.state[p]["step"] == steps


def test_adamw_constant_gradient_closed_form(backend):
    # x_{t+1} = r x_t - s with r = 1 - lr wd and s = lr c / (|c| + eps / sqrt(1 - b2^t)) ~ s0.
    c, lr, wd, steps = 1.5, 0.01, 0.5, 30
    p = td.Parameter(backend.tensor([2.0], dtype="float64"))
    opt = AdamW([p], lr=lr, weight_decay=wd, eps=0.0)
    for _ in range(steps):
        p.grad = backend.tensor([c], dtype="float64")
        opt.step()
    r, s = 1 - lr * wd, lr * np.sign(c)
    expected = r**steps * 2.0 - s * (1 - r**steps) / (1 - r)
    np.testing.assert_allclose(backend.numpy(p), [expected], rtol=1e-12)


def test_update_function_on_plain_arrays_is_in_place():
    param, grad = np.zeros(4, np.float32), np.ones(4, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    before = param
    adam_update(
        param,
        grad,
        m,
        v,
        None,
        step=1,
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        eps=0.0,
        weight_decay=0.0,
        amsgrad=False,
        maximize=False,
        decoupled=False,
        work=(np.empty(4, np.float32), np.empty(4, np.float32)),
    )
    assert param is before and param.dtype == np.float32
    np.testing.assert_allclose(param, -0.1, rtol=1e-6)
    np.testing.assert_allclose(m, 0.1, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1e-3), "Adam: invalid learning rate -0.001; lr must be >= 0"),
        (dict(eps=-1.0), "invalid epsilon"),
        (dict(betas=(1.0, 0.999)), r"beta at index 0 1.0; betas must be in \[0, 1\)"),
        (dict(betas=(0.9, -0.1)), "beta at index 1"),
        (dict(weight_decay=-0.1), "invalid weight_decay"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Adam([td.Parameter(td.zeros(2))], **kwargs)
