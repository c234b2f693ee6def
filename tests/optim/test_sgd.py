import itertools

import numpy as np
import pytest

import tinydl as td
from tinydl.optim import SGD, sgd_update

GRID = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 0.05], [False, True]
    )
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize("opts", GRID, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_trajectory_matches_torch(backend, torch, problem, same_trajectory, opts):
    sign = -1.0 if opts["maximize"] else 1.0
    ours = problem.run_tinydl(lambda ps: SGD(ps, lr=0.05, **opts), sign=sign, backend=backend)
    theirs = problem.run_torch(
        lambda ps: torch.optim.SGD(ps, lr=0.05, foreach=False, **opts), sign=sign
    )
    same_trajectory(ours, theirs)


def test_plain_sgd_on_a_quadratic_has_the_closed_form(backend):
    # f(x) = a/2 x^2: x_t = (1 - lr a)^t x_0
    a, lr, x0 = 3.0, 0.1, np.array([2.0, -1.0])
    p = td.Parameter(backend.tensor(x0))
    opt = SGD([p], lr=lr)
    for _ in range(15):
        p.grad = td.Tensor(a * p.data)
        opt.step()
    np.testing.assert_allclose(backend.numpy(p), (1 - lr * a) ** 15 * x0, rtol=1e-12)


def test_heavy_ball_recurrence_first_buffer_is_the_gradient(backend):
    # constant gradient c, momentum m: buf_t = c (1 + m + ... + m^(t-1)); first step moves lr*c
    c, lr, m = 2.0, 0.1, 0.5
    p = td.Parameter(backend.tensor([0.0], dtype="float64"))
    opt = SGD([p], lr=lr, momentum=m, dampening=0.9)  # dampening is not applied to step 1
    p.grad = backend.tensor([c], dtype="float64")
    opt.step()
    np.testing.assert_allclose(backend.numpy(p), [-lr * c], rtol=1e-12)
    buf = opt.state[p]["momentum_buffer"]
    np.testing.assert_allclose(backend.numpy(buf), [c])
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    np.testing.assert_allclose(backend.numpy(buf), [m * c + 0.1 * c], rtol=1e-12)


def test_nesterov_closed_form_two_steps(backend):
    c, lr, m = 1.0, 0.1, 0.9
    p = td.Parameter(backend.tensor([0.0], dtype="float64"))
    opt = SGD([p], lr=lr, momentum=m, nesterov=True)
    p.grad = backend.tensor([c], dtype="float64")
    opt.step()
    opt.step()
    # step 1: buf=c, d=c+m c; step 2: buf=m c + c, d = c + m (m c + c)
    expected = -lr * ((c + m * c) + (c + m * (m * c + c)))
    np.testing.assert_allclose(backend.numpy(p), [expected], rtol=1e-14)


def test_update_function_works_on_plain_arrays():
    param, grad = np.ones(3), np.full(3, 2.0)
    buf = sgd_update(
        param,
        grad,
        None,
        lr=0.5,
        momentum=0.9,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
        maximize=False,
        work=(np.empty(3), np.empty(3)),
    )
    np.testing.assert_array_equal(param, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(buf, grad)
    assert not np.shares_memory(buf, grad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-0.1), r"SGD: invalid learning rate -0.1; lr must be >= 0"),
        (dict(momentum=-0.5), "invalid momentum -0.5"),
        (dict(weight_decay=-1e-4), "invalid weight_decay"),
        (dict(nesterov=True), "nesterov=True needs momentum > 0"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), "dampening == 0"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([td.Parameter(td.zeros(2))], **kwargs)
