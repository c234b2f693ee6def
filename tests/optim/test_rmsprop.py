import itertools

import numpy as np
import pytest

import tinydl as td
from tinydl.optim import RMSprop

GRID = [
    dict(alpha=a, weight_decay=wd, momentum=m, centered=c, maximize=mx)
    for a, wd, m, c, mx in itertools.product(
        [0.99, 0.3], [0.0, 0.1], [0.0, 0.9], [False, True], [False, True]
    )
]


@pytest.mark.parametrize("opts", GRID, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_trajectory_matches_torch(backend, torch, problem, same_trajectory, opts):
    sign = -1.0 if opts["maximize"] else 1.0
    ours = problem.run_tinydl(lambda ps: RMSprop(ps, lr=0.01, **opts), sign=sign, backend=backend)
    theirs = problem.run_torch(
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, foreach=False, **opts), sign=sign
    )
    same_trajectory(ours, theirs)


@pytest.mark.parametrize("centered", [False, True])
def test_constant_gradient_closed_form(backend, centered):
    # v_t = c^2 (1 - a^t); centered: a_t = c (1 - a^t), so v_t - a_t^2 = c^2 (1 - a^t) a^t.
    c, lr, alpha, eps, steps = -0.7, 0.01, 0.9, 1e-8, 12
    p = td.Parameter(backend.tensor([0.0], dtype="float64"))
    opt = RMSprop([p], lr=lr, alpha=alpha, eps=eps, centered=centered)
    for _ in range(steps):
        p.grad = backend.tensor([c], dtype="float64")
        opt.step()
    decay = alpha ** np.arange(1, steps + 1)
    var = c * c * (1 - decay) * (decay if centered else 1.0)
    expected = -np.sum(lr * c / (np.sqrt(var) + eps))
    np.testing.assert_allclose(backend.numpy(p), [expected], rtol=1e-10)
    assert ("grad_avg" in opt.state[p]) == centered


def test_momentum_closed_form_two_steps(backend):
    c, lr, alpha, m = 1.0, 0.1, 0.5, 0.9
    p = td.Parameter(backend.tensor([0.0], dtype="float64"))
    opt = RMSprop([p], lr=lr, alpha=alpha, eps=0.0, momentum=m)
    for _ in range(2):
        p.grad = backend.tensor([c], dtype="float64")
        opt.step()
    s1, s2 = c / np.sqrt(1 - alpha), c / np.sqrt(1 - alpha**2)
    np.testing.assert_allclose(backend.numpy(p), [-lr * s1 - lr * (m * s1 + s2)], rtol=1e-14)


def test_momentum_switched_on_later_starts_from_zero(backend):
    p = td.Parameter(backend.tensor([1.0]))
    opt = RMSprop([p], lr=0.1)
    p.grad = backend.tensor([1.0])
    opt.step()
    assert "momentum_buffer" not in opt.state[p]
    opt.param_groups[0]["momentum"] = 0.9
    opt.step()
    assert "momentum_buffer" in opt.state[p]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-0.01), "RMSprop: invalid learning rate -0.01; lr must be >= 0"),
        (dict(alpha=-0.5), "invalid alpha -0.5"),
        (dict(eps=-1e-8), "invalid epsilon"),
        (dict(momentum=-0.1), "invalid momentum"),
        (dict(weight_decay=-0.1), "invalid weight_decay"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RMSprop([td.Parameter(td.zeros(2))], **kwargs)
