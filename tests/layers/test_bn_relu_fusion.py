"""Sequential (and ResNet's blocks) run a BatchNorm and the ReLU after it as one fused op,
``F.batch_norm_relu``: the same numbers as the two modules one by one, the same modules and
state-dict keys, and no fusion when a hook on either module must see the intermediate output."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import distributed as dist
from tinydl import layers as nn


def _op(t) -> str:
    return repr(t.grad_fn)


def _net(dtype=np.float64):
    td.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=dtype),
        nn.BatchNorm2d(3, dtype=dtype),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 16, 5, dtype=dtype),
        nn.BatchNorm1d(5, dtype=dtype),
        nn.ReLU(),
    )


def _run(model, x, g):
    x = td.tensor(x, requires_grad=True)
    out = model(x)
    out.backward(td.tensor(g))
    grads = [p.grad.detach().numpy().copy() for p in model.parameters()]
    model.zero_grad()
    return out, [out.detach().numpy(), x.grad.detach().numpy(), *grads]


def _unfuse(model):
    """A no-op forward hook on every ReLU: the documented way fusion is switched off."""
    return [m.register_forward_hook(lambda *a: None) for m in model if isinstance(m, nn.ReLU)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", [None, "nan", "inf"])
def test_fused_sequential_equals_the_modules_one_by_one(dtype, special):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2, 4, 4)).astype(dtype)
    g = rng.standard_normal((6, 5)).astype(dtype)
    if special == "nan":
        x[0, 1, 2, 2] = np.nan
    if special == "inf":
        g[1, 2] = np.inf
    results, stats = [], []
    for fused in (True, False):
        model = _net(dtype)
        handles = [] if fused else _unfuse(model)
        out, res = _run(model, x, g)
        assert ("BatchNormRelu" in _op(out)) == fused
        results.append(res)
        stats.append([b.detach().numpy().copy() for b in model.buffers()])
        for h in handles:
            h.remove()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    with np.errstate(invalid="ignore"):
        for a, b in zip(results[0] + stats[0], results[1] + stats[1]):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True)
    if special == "inf":  # a NaN gradient, as in the unfused pair: not silently masked away
        assert np.isnan(results[0][1]).any()


def test_eval_mode_fused_equals_unfused():
    model, x = _net(), np.random.default_rng(2).standard_normal((4, 2, 4, 4))
    model(td.tensor(x))  # running statistics away from their initial values
    model.eval()
    fused = model(td.tensor(x)).detach().numpy()
    _unfuse(model)
    np.testing.assert_array_equal(fused, model(td.tensor(x)).detach().numpy())


def test_modules_and_state_dict_keys_do_not_change():
    model = nn.MnistCNN()
    keys = list(model.state_dict())
    assert "1.weight" in keys and "1.running_mean" in keys and "2.weight" not in keys
    assert [type(m).__name__ for m in model][:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    model(td.randn(2, 1, 28, 28))
    assert list(model.state_dict()) == keys
    model.load_state_dict(nn.MnistCNN().state_dict())  # weights load by key as before


@pytest.mark.parametrize("where", ["bn", "relu"])
def test_a_hook_on_either_module_switches_fusion_off(where):
    model, seen = _net(), []
    target = model[1] if where == "bn" else model[2]
    target.register_forward_hook(lambda m, args, out: seen.append(out.detach().numpy().copy()))
    out = model(td.randn(4, 2, 4, 4, dtype=np.float64))
    (got,) = seen
    assert (got < 0).any() == (where == "bn")  # the hook on the BatchNorm sees its own output
    assert "BatchNormRelu" in _op(out)  # the second pair, without hooks, is still fused


def test_only_a_plain_relu_fuses():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return F.relu(x) + 1.0

    model = nn.Sequential(nn.BatchNorm1d(3), Shifted())
    assert model(td.randn(4, 3)).detach().numpy().min() >= 1.0
    assert nn.BatchNorm1d(3).fused_with(nn.Sigmoid()) is None


def test_sync_batchnorm_then_relu_runs_unfused():
    model = _net()
    x = td.randn(4, 2, 4, 4, dtype=np.float64)
    expected = model(x).detach().numpy()
    synced = dist.SyncBatchNorm.convert_sync_batchnorm(_net())
    out = synced(x)
    assert "BatchNormRelu" not in _op(out)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_resnet_block_fuses_bn1_unless_hooked():
    td.manual_seed(0)
    block, seen = nn.BasicBlock(2, 2), []
    x = td.randn(2, 2, 6, 6)
    fused = block(x).detach().numpy()
    with block.bn1.register_forward_hook(lambda m, a, out: seen.append(out)):
        unfused = block(x).detach().numpy()
    assert len(seen) == 1
    np.testing.assert_allclose(fused, unfused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_resnet_block_ends_in_one_bn_add_relu_op_unless_bn2_is_hooked(dtype, stride):
    # relu(bn2(conv2(..)) + shortcut) runs as F.batch_norm(.., residual=): the same numbers
    # (gradients of the input and every parameter, running statistics) as the ops one by one
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 2, 6, 6)).astype(dtype)
    g = rng.standard_normal((4, 3, 6 // stride, 6 // stride)).astype(dtype)
    results = []
    for fused in (True, False):
        td.manual_seed(0)
        block, seen = nn.BasicBlock(2, 3, stride=stride).to(dtype), []
        if not fused:
            block.bn2.register_forward_hook(lambda m, a, o, seen=seen: seen.append(o))
        out, res = _run(block, x, g)
        assert ("BatchNormAddRelu" in _op(out)) == fused and len(seen) == (0 if fused else 1)
        results.append(res + [block.bn2.running_mean.numpy(), block.bn2.running_var.numpy()])
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, **tol)


def test_resnet_block_in_eval_mode_composes_the_ops():
    td.manual_seed(0)
    block = nn.BasicBlock(2, 2)
    block(td.randn(4, 2, 5, 5))  # running statistics away from their start
    block.eval()
    x = td.randn(3, 2, 5, 5)
    expected = F.add_relu(block.bn2(block.conv2(block._bn1_relu(block.conv1(x)))), x)
    assert "BatchNormAddRelu" not in _op(block(x))
    np.testing.assert_allclose(block(x).detach().numpy(), expected.detach().numpy(), rtol=1e-6,
                               atol=1e-6)


def test_a_resnet_block_with_sync_batchnorm_composes_the_residual():
    td.manual_seed(0)
    block = nn.BasicBlock(2, 2).to(np.float64)
    x = td.randn(4, 2, 5, 5, dtype=np.float64)
    expected = block(x).detach().numpy()
    td.manual_seed(0)
    synced = dist.SyncBatchNorm.convert_sync_batchnorm(nn.BasicBlock(2, 2).to(np.float64))
    out = synced(x)
    assert "BatchNormAddRelu" not in _op(out)  # no fused kernel for synced statistics
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
