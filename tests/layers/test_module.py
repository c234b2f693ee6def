"""Module: registration, traversal, modes, state dicts, moving, printing."""

import numpy as np
import pytest

import tinydl as td
from tinydl import layers as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.scale = td.Parameter(td.ones(1))
        self.register_buffer("count", td.zeros(1))
        self.register_buffer("scratch", td.zeros(1), persistent=False)
        self.not_registered = td.ones(2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


def test_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "fc2.weight"]
    assert [n for n, _ in net.named_buffers()] == ["count", "scratch"]
    assert [n for n, _ in net.named_children()] == ["fc1", "act", "fc2"]
    assert len(list(net.modules())) == 4
    assert net.num_parameters() == 1 + 4 * 3 + 3 + 3 * 2


def test_shared_parameter_counted_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2


def test_reassigning_replaces_registration():
    net = Net()
    net.fc1 = nn.Identity()
    assert "fc1.weight" not in dict(net.named_parameters())
    del net.scale
    assert "scale" not in dict(net.named_parameters())


def test_super_init_is_required():
    class Bad(nn.Module):
        def __init__(self):
            self.w = td.Parameter(td.ones(1))

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_train_eval_propagate():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad(backend):
    net = Net().to(backend.name)
    net(td.randn(5, 4, device=backend.name)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(backend.numpy(p.grad) == 0) for p in net.parameters())
    assert all(p.grad.device == backend.device for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_keeps_parameter_arrays(backend):
    a, b = Net().to(backend.name), Net().to(backend.name)
    sd = a.state_dict()
    assert list(sd) == ["scale", "count", "fc1.weight", "fc1.bias", "fc2.weight"]
    before = b.fc1.weight.data
    b.load_state_dict(sd)
    assert b.fc1.weight.data is before
    np.testing.assert_array_equal(backend.numpy(b.fc1.weight), backend.numpy(a.fc1.weight))


def test_load_state_dict_lists_every_problem():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["extra"] = td.ones(1)
    sd["fc2.weight"] = td.ones(5, 5)
    with pytest.raises(nn.StateDictError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: fc1.bias" in msg and "unexpected keys: extra" in msg
    assert "fc2.weight: checkpoint (5, 5) vs model (2, 3)" in msg


def test_non_strict_load_returns_keys():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["extra"] = td.ones(1)
    result = Net().load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc1.bias"] and result.unexpected_keys == ["extra"]


def test_to_casts_in_place(backend):
    net = Net()
    params = list(net.parameters())
    net.to(backend.name)
    net.to(td.float64)
    assert all(p.dtype == np.float64 and p.device == backend.device for p in net.parameters())
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert net(td.randn(2, 4, dtype=td.float64, device=backend.name)).dtype == np.float64


def test_repr_tree():
    text = repr(nn.Sequential(nn.Linear(4, 2), nn.Sequential(nn.ReLU())))
    assert text == (
        "Sequential(\n  (0): Linear(in_features=4, out_features=2, bias=True)\n"
        "  (1): Sequential(\n    (0): ReLU()\n  )\n)"
    )


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and len(seq[:2]) == 2
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and len(list(ml.parameters())) == 6
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(lambda x: x)
