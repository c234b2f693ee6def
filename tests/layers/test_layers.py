"""Each layer against PyTorch's with the same weights: outputs, input and parameter gradients."""

import numpy as np
import pytest

import tinydl as td
from tests.devices import CPU
from tinydl import layers as nn
from tinydl.layers import init

torch = pytest.importorskip("torch", reason="layer tests compare with PyTorch")
tnn = torch.nn


def copy_weights(ours, theirs):
    sd = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict(sd)


def compare(ours, theirs, shape, train=True, rtol=1e-4, atol=1e-5, backend=CPU):
    """``ours`` (on ``backend``'s device, with ``theirs``'s weights) against ``theirs``: outputs,
    input and parameter gradients, buffers."""
    copy_weights(ours, theirs)
    ours.to(backend.name)
    ours.train(train)
    theirs.train(train)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    xo = backend.tensor(x, requires_grad=True)
    yt, yo = theirs(xt), ours(xo)
    assert yo.device == backend.device
    np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    yo.backward(backend.tensor(g))
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=rtol, atol=atol)
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)
    for name, b in theirs.named_buffers():
        np.testing.assert_allclose(dict(ours.named_buffers())[name].numpy(), b.numpy(),
                                   rtol=rtol, atol=atol, err_msg=name)


CASES = [
    (lambda: nn.Linear(5, 3), lambda: tnn.Linear(5, 3), (4, 5)),
    (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1), lambda: tnn.Conv2d(2, 4, 3, 2, 1), (2, 2, 7, 7)),
    (lambda: nn.Conv2d(4, 4, 3, groups=2, bias=False, dilation=2),
     lambda: tnn.Conv2d(4, 4, 3, groups=2, bias=False, dilation=2), (2, 4, 8, 8)),
    (lambda: nn.MaxPool2d(2), lambda: tnn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda: nn.AvgPool2d(3, 2, 1), lambda: tnn.AvgPool2d(3, 2, 1), (2, 3, 7, 7)),
    (lambda: nn.AdaptiveAvgPool2d(2), lambda: tnn.AdaptiveAvgPool2d(2), (2, 3, 5, 5)),
    (lambda: nn.BatchNorm1d(3), lambda: tnn.BatchNorm1d(3), (6, 3)),
    (lambda: nn.BatchNorm2d(3), lambda: tnn.BatchNorm2d(3), (4, 3, 5, 5)),
    (lambda: nn.LayerNorm((3, 4)), lambda: tnn.LayerNorm((3, 4)), (2, 3, 4)),
    (lambda: nn.ReLU(), lambda: tnn.ReLU(), (3, 4)),
    (lambda: nn.LeakyReLU(0.2), lambda: tnn.LeakyReLU(0.2), (3, 4)),
    (lambda: nn.GELU(), lambda: tnn.GELU(), (3, 4)),
    (lambda: nn.GELU("tanh"), lambda: tnn.GELU("tanh"), (3, 4)),
    (lambda: nn.Sigmoid(), lambda: tnn.Sigmoid(), (3, 4)),
    (lambda: nn.Tanh(), lambda: tnn.Tanh(), (3, 4)),
    (lambda: nn.Softmax(1), lambda: tnn.Softmax(1), (3, 4)),
    (lambda: nn.LogSoftmax(1), lambda: tnn.LogSoftmax(1), (3, 4)),
    (lambda: nn.Flatten(), lambda: tnn.Flatten(), (2, 3, 4)),
    (lambda: nn.Identity(), lambda: tnn.Identity(), (2, 3)),
]


@pytest.mark.parametrize("ours,theirs,shape", CASES, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("train", [True, False])
def test_layer_matches_pytorch(backend, ours, theirs, shape, train):
    torch.manual_seed(0)
    compare(ours(), theirs(), shape, train=train, backend=backend)


def test_batchnorm_eval_uses_running_stats_after_training(backend):
    ours, theirs = nn.BatchNorm2d(3).to(backend.name), tnn.BatchNorm2d(3)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((4, 3, 2, 2)).astype(np.float32) * 3 + 1
        ours(backend.tensor(x))
        theirs(torch.tensor(x))
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-5)
    assert ours.num_batches_tracked.item() == 3
    compare(ours, theirs, (2, 3, 2, 2), train=False, backend=backend)


def test_batchnorm_shape_errors():
    with pytest.raises(td.ShapeError, match=r"BatchNorm2d: expected a 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(td.ones(2, 3))
    with pytest.raises(td.ShapeError, match="expected 3 channels"):
        nn.BatchNorm1d(3)(td.ones(2, 4))


def test_dropout_is_identity_in_eval_and_scales_in_training(backend):
    d = nn.Dropout(0.5)
    x = td.ones(1000, device=backend.name)
    y = d(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 300 < (y == 0).sum() < 700
    d.eval()
    assert np.array_equal(d(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="1.5"):
        nn.Dropout(1.5)


def test_default_init_matches_pytorch_bounds():
    td.manual_seed(0)
    lin = nn.Linear(100, 50)
    bound = 1 / np.sqrt(100)
    assert np.abs(lin.weight.detach().numpy()).max() <= bound and np.abs(lin.bias.detach().numpy()).max() <= bound
    assert np.abs(lin.weight.detach().numpy()).max() > 0.9 * bound


@pytest.mark.parametrize("fn,kwargs,std", [
    (init.kaiming_normal_, {"nonlinearity": "relu"}, np.sqrt(2 / 200)),
    (init.xavier_normal_, {}, np.sqrt(2 / 300)),
    (init.normal_, {"std": 0.5}, 0.5),
])
def test_normal_initializers_have_the_right_spread(backend, fn, kwargs, std):
    w = td.empty(100, 200, device=backend.name)
    fn(w, **kwargs)
    assert abs(w.numpy().std() / std - 1) < 0.05


@pytest.mark.parametrize("fn,kwargs,bound", [
    (init.kaiming_uniform_, {"nonlinearity": "relu"}, np.sqrt(6 / 200)),
    (init.xavier_uniform_, {}, np.sqrt(6 / 300)),
    (init.uniform_, {"a": -0.3, "b": 0.3}, 0.3),
])
def test_uniform_initializers_have_the_right_bounds(backend, fn, kwargs, bound):
    w = td.empty(100, 200, device=backend.name)
    fn(w, **kwargs)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.95 * bound


def test_constant_initializers_and_errors(backend):
    w = td.empty(3, 3, device=backend.name)
    assert np.all(init.ones_(w).numpy() == 1) and np.all(init.zeros_(w).numpy() == 0)
    assert w.device == backend.device
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(td.empty(3))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(w, mode="fan")
