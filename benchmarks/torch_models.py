"""PyTorch twins of tinydl's model zoo (``tinydl/layers/models.py``), layer for layer.

The twins have the same layers in the same order with the same options, so their state-dict
keys and shapes are tinydl's: ``load_tinydl_state(twin, model.state_dict())`` copies a tinydl
model into its twin, and both then compute the same logits (``tests/test_benchmark_models.py``).
This is the only module of the benchmarks that imports PyTorch.
"""

from __future__ import annotations

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "benchmarks.torch_models needs PyTorch as the reference: pip install torch==2.13.0 "
        "(the CPU build is enough)"
    ) from exc

__all__ = [
    "torch",
    "MLP",
    "LeNet5",
    "MnistCNN",
    "BasicBlock",
    "ResNetSmall",
    "VGGSmall",
    "TORCH_MODELS",
    "load_tinydl_state",
]


class MLP(nn.Sequential):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden size, then a linear classifier."""

    def __init__(self, in_features=784, hidden=(256, 128), num_classes=10, dropout=0.0):
        layers = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_features, h), nn.ReLU()]
            layers += [nn.Dropout(dropout)] if dropout else []
            in_features = h
        super().__init__(*layers, nn.Linear(in_features, num_classes))


class LeNet5(nn.Sequential):
    """conv5-pool-conv5-pool-120-84-10 with ReLU and max-pooling."""

    def __init__(self, num_classes=10):
        super().__init__(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )


def _conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class MnistCNN(nn.Sequential):
    """Two conv-conv-pool stages with BatchNorm and dropout, then a BatchNorm'd hidden layer."""

    def __init__(self, num_classes=10, width=32, hidden=128, dropout=0.25):
        w1, w2 = width, 2 * width
        super().__init__(
            *_conv_bn_relu(1, w1),
            *_conv_bn_relu(w1, w1),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            *_conv_bn_relu(w1, w2),
            *_conv_bn_relu(w2, w2),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(w2 * 7 * 7, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(2 * dropout),
            nn.Linear(hidden, num_classes),
        )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A 3x3 stem, three stages of residual blocks (w, 2w, 4w), global pooling, a classifier."""

    def __init__(self, num_classes=10, width=16, blocks_per_stage=1):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(1, width))
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks_per_stage):
                stages.append(BasicBlock(cin, cout, stride=2 if i > 0 and b == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(x.flatten(1))


class VGGSmall(nn.Sequential):
    """Stages of 3x3 conv-BN-ReLU layers, each ending in a 2x2 max-pool, then a classifier."""

    def __init__(
        self,
        num_classes=10,
        in_channels=1,
        widths=(32, 64, 128),
        convs_per_stage=2,
        hidden=256,
        dropout=0.5,
        image_size=28,
    ):
        layers, cin = [], in_channels
        for cout in widths:
            for _ in range(convs_per_stage):
                layers += _conv_bn_relu(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
            image_size //= 2
        layers += [nn.Flatten(), nn.Linear(cin * image_size * image_size, hidden), nn.ReLU()]
        super().__init__(*layers, nn.Dropout(dropout), nn.Linear(hidden, num_classes))


TORCH_MODELS = {
    "mlp": MLP,
    "lenet": LeNet5,
    "cnn": MnistCNN,
    "resnet": ResNetSmall,
    "vgg": VGGSmall,
}


def load_tinydl_state(twin: nn.Module, state_dict) -> nn.Module:
    """Copy a tinydl ``state_dict`` (Tensors or arrays by dotted name) into ``twin``, strictly."""
    tensors = {
        k: torch.from_numpy(np.array(getattr(v, "data", v), copy=True))
        for k, v in state_dict.items()
    }
    twin.load_state_dict(tensors, strict=True)
    return twin
