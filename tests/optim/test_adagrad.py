import itertools

import numpy as np
import pytest

import tinydl as td
from tinydl.optim import Adagrad

GRID = [
    dict(lr_decay=d, weight_decay=wd, initial_accumulator_value=iv, maximize=mx)
    for d, wd, iv, mx in itertools.product([0.0, 0.1], [0.0, 0.1], [0.0, 0.5], [False, True])
]


@pytest.mark.parametrize("opts", GRID, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_trajectory_matches_torch(backend, torch, problem, same_trajectory, opts):
    sign = -1.0 if opts["maximize"] else 1.0
    ours = problem.run_tinydl(lambda ps: Adagrad(ps, lr=0.1, **opts), sign=sign, backend=backend)
    theirs = problem.run_torch(
        lambda ps: torch.optim.Adagrad(ps, lr=0.1, foreach=False, **opts), sign=sign
    )
    same_trajectory(ours, theirs)


def test_constant_gradient_closed_form(backend):
    # s_t = s_0 + t c^2; x moves lr / (1 + (t-1) d) * c / (sqrt(s_t) + eps) at step t.
    c, lr, d, s0, eps, steps = 2.0, 0.1, 0.05, 0.25, 1e-10, 15
    p = td.Parameter(backend.tensor([1.0], dtype="float64"))
    opt = Adagrad([p], lr=lr, lr_decay=d, initial_accumulator_value=s0, eps=eps)
    for _ in range(steps):
        p.grad = backend.tensor([c], dtype="float64")
        opt.step()
    t = np.arange(1, steps + 1)
    expected = 1.0 - np.sum(lr / (1 + (t - 1) * d) * c / (np.sqrt(s0 + t * c * c) + eps))
    np.testing.assert_allclose(backend.numpy(p), [expected], rtol=1e-12)
    np.testing.assert_allclose(backend.numpy(opt.state[p]["sum"]), [s0 + steps * c * c])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1.0), "Adagrad: invalid learning rate -1.0; lr must be >= 0"),
        (dict(lr_decay=-0.1), "invalid lr_decay"),
        (dict(weight_decay=-0.1), "invalid weight_decay"),
        (dict(initial_accumulator_value=-1.0), "invalid initial_accumulator_value"),
        (dict(eps=-1.0), "invalid epsilon"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Adagrad([td.Parameter(td.zeros(2))], **kwargs)
