"""The model zoo: shapes, parameter counts equal to the same architectures in PyTorch, training."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl.optim import Adam


@pytest.mark.parametrize("name", sorted(nn.MODELS))
def test_forward_backward_shapes(backend, name):
    td.manual_seed(0)
    model = nn.MODELS[name]().to(backend.name)
    x = td.randn(4, 1, 28, 28, device=backend.name)
    out = model(x)
    assert out.shape == (4, 10) and out.dtype == np.float32 and out.device == backend.device
    F.cross_entropy(out, backend.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())
    model.eval()
    assert model(x).shape == (4, 10)


def test_parameter_counts_match_pytorch():
    torch = pytest.importorskip("torch", reason="compares with the same architecture in PyTorch")
    tnn = torch.nn
    lenet = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
        tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
        tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    assert nn.LeNet5().num_parameters() == sum(p.numel() for p in lenet.parameters())
    mlp = tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 128),
                         tnn.ReLU(), tnn.Linear(128, 10))
    assert nn.MLP().num_parameters() == sum(p.numel() for p in mlp.parameters())


def test_vgg_small_follows_its_kwargs():
    td.manual_seed(0)
    model = nn.VGGSmall(num_classes=5, in_channels=3, widths=(8, 16), convs_per_stage=3,
                        hidden=12, image_size=32)  # fmt: skip
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 8), (8, 8), (8, 8), (8, 16), (16, 16), (16, 16)]  # fmt: skip
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [lin.weight.shape for lin in linears] == [(12, 16 * 8 * 8), (5, 12)]
    assert model(td.randn(2, 3, 32, 32)).shape == (2, 5)


def test_small_cnn_learns_a_toy_problem(backend):
    # bright top half vs bright bottom half: a CNN must get this right in a few steps
    td.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28)).astype(np.float32) * 0.1
    y = rng.integers(0, 2, 64)
    x[y == 0, :, :14] += 1.0
    x[y == 1, :, 14:] += 1.0
    model = nn.LeNet5(num_classes=2).to(backend.name)
    opt = Adam(model.parameters(), lr=1e-2)
    xt, yt = backend.tensor(x), backend.tensor(y)
    for _ in range(15):
        loss = F.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
