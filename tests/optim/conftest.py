"""A small least-squares problem whose gradient is computed in NumPy, and runners that take the
same steps with tinydl's optimizers (on any device) and with torch.optim, so that tests compare
trajectories."""

import numpy as np
import pytest

import tinydl as td
from tests.devices import CPU


class Problem:
    """Linear regression ``Y ~ X @ W.T + b`` plus a quartic term, so the curvature changes."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.X = rng.standard_normal((8, 4))
        self.Y = rng.standard_normal((8, 3))
        self.init = [rng.standard_normal((3, 4)), rng.standard_normal(3)]

    def grads(self, W, b):  # noqa: N803
        n = len(self.X)
        R = self.X @ W.T + b - self.Y
        return [R.T @ self.X / n + 0.1 * W**3, R.sum(0) / n]

    # ``sign=-1`` hands the optimizer the gradient of -f, for runs with ``maximize=True``; the
    # parameters live on ``backend``'s device, the trajectory comes back as NumPy arrays.
    def run_tinydl(self, make_opt, steps=20, dtype=np.float64, make_sched=None, sign=1.0,
                   backend=CPU):
        params = [td.Parameter(backend.tensor(a.astype(dtype))) for a in self.init]
        opt = make_opt(params)
        sched = make_sched(opt) if make_sched else None
        out = []
        for _ in range(steps):
            host = [backend.numpy(p).astype(np.float64) for p in params]
            for p, g in zip(params, self.grads(*host)):
                p.grad = backend.tensor((sign * g).astype(dtype))
            opt.step()
            if sched:
                sched.step()
            out.append([backend.numpy(p).copy() for p in params])
        return out

    def run_torch(self, make_opt, steps=20, make_sched=None, sign=1.0):
        import torch

        params = [torch.nn.Parameter(torch.tensor(a.copy())) for a in self.init]
        opt = make_opt(params)
        sched = make_sched(opt) if make_sched else None
        out = []
        for _ in range(steps):
            for p, g in zip(params, self.grads(*[p.detach().numpy() for p in params])):
                p.grad = torch.from_numpy(sign * g)
            opt.step()
            if sched:
                sched.step()
            out.append([p.detach().numpy().copy() for p in params])
        return out


def assert_same_trajectory(ours, theirs, rtol=1e-10, atol=1e-12):
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {step}, p{i}")


@pytest.fixture
def problem():
    return Problem()


@pytest.fixture
def same_trajectory():
    return assert_same_trajectory


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is the reference for optimizer tests")
