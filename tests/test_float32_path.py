"""float32 stays float32 on the hot path: a training step of every model zoo network creates
no float64 array in the forward, the backward, the gradients or the optimizer state (NumPy
promotes silently, e.g. an array times a Python-float-derived float64 array; that would double
the memory traffic of every op after it)."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl.autograd import record_ops
from tinydl.layers import MODELS
from tinydl.optim import SGD, Adam, AdamW


def _arrays(value):
    if isinstance(value, td.Tensor):
        yield value.data
    elif isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays(v)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("opt", [Adam, AdamW, SGD])
def test_a_training_step_has_no_float64(name, opt):
    td.manual_seed(0)
    model = MODELS[name]().train()
    optim = opt(model.parameters(), lr=1e-3, **({"momentum": 0.9} if opt is SGD else {}))
    x, y = td.randn(8, 1, 28, 28), td.tensor(np.arange(8) % 10)
    with record_ops() as calls:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optim.zero_grad()
        loss.backward()
    optim.step()
    optim.step()  # the state exists from the first step on
    wide = [
        (fn.__name__, a.shape)
        for fn, args, kw in calls
        for a in _arrays(list(args) + list(kw.values()))
        if a.dtype == np.float64
    ]
    assert not wide, f"float64 arrays reached these ops: {wide[:10]}"
    assert logits.dtype == loss.dtype == td.float32
    for p in model.parameters():
        assert p.dtype == p.grad.dtype == td.float32
    for state in optim.state.values():
        for key, v in state.items():
            for a in _arrays(v):
                assert a.dtype != np.float64, f"optimizer state {key} is float64"
    for b in model.buffers():
        assert b.dtype in (td.float32, td.int64), b.dtype
