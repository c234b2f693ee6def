"""The model zoo for 28x28 digits: MLP, LeNet5, MnistCNN, ResNetSmall and VGGSmall.

Each takes ``(N, 1, 28, 28)`` images and returns ``(N, num_classes)`` logits.
"""

from __future__ import annotations

from .. import functional as F
from .activation import Dropout, ReLU
from .container import Sequential
from .conv import AdaptiveAvgPool2d, Conv2d, MaxPool2d
from .hooks import has_hooks
from .linear import Flatten, Identity, Linear
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d
from .pretrained import load_pretrained_into

__all__ = ["MLP", "LeNet5", "MnistCNN", "ResNetSmall", "BasicBlock", "VGGSmall", "MODELS"]


class MLP(Sequential):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden size, then a linear classifier."""

    def __init__(
        self, in_features: int = 784, hidden=(256, 128), num_classes: int = 10, dropout: float = 0.0
    ):
        layers = [Flatten()]
        for h in hidden:
            layers += [Linear(in_features, h), ReLU()] + ([Dropout(dropout)] if dropout else [])
            in_features = h
        super().__init__(*layers, Linear(in_features, num_classes))


class LeNet5(Sequential):
    """LeCun et al. 1998 with ReLU and max-pooling: conv5-pool-conv5-pool-120-84-10.

    ``pretrained=True`` loads the weights trained on MNIST that ship with tinydl (their record:
    ``tinydl.layers.pretrained.pretrained_meta("lenet")``; inputs normalised with its mean/std).
    The model is left in training mode, as any new module: call ``.eval()`` to predict."""

    def __init__(self, num_classes: int = 10, pretrained: bool = False):
        super().__init__(
            Conv2d(1, 6, 5, padding=2),
            ReLU(),
            MaxPool2d(2),
            Conv2d(6, 16, 5),
            ReLU(),
            MaxPool2d(2),
            Flatten(),
            Linear(16 * 5 * 5, 120),
            ReLU(),
            Linear(120, 84),
            ReLU(),
            Linear(84, num_classes),
        )
        if pretrained:
            load_pretrained_into(self, "lenet", num_classes=num_classes)


def _conv_bn_relu(cin: int, cout: int) -> list[Module]:
    return [Conv2d(cin, cout, 3, padding=1, bias=False), BatchNorm2d(cout), ReLU()]


class MnistCNN(Sequential):
    """Two conv-conv-pool stages with BatchNorm and dropout, then a BatchNorm'd hidden layer.

    ``pretrained=True`` loads the shipped MNIST weights, as for ``LeNet5`` (record:
    ``pretrained_meta("cnn")``); ``dropout`` may differ from training's, the sizes may not."""

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 32,
        hidden: int = 128,
        dropout: float = 0.25,
        pretrained: bool = False,
    ):
        w1, w2 = width, 2 * width
        super().__init__(
            *_conv_bn_relu(1, w1),
            *_conv_bn_relu(w1, w1),
            MaxPool2d(2),
            Dropout(dropout),
            *_conv_bn_relu(w1, w2),
            *_conv_bn_relu(w2, w2),
            MaxPool2d(2),
            Dropout(dropout),
            Flatten(),
            Linear(w2 * 7 * 7, hidden, bias=False),
            BatchNorm1d(hidden),
            ReLU(),
            Dropout(2 * dropout),
            Linear(hidden, num_classes),
        )
        if pretrained:
            load_pretrained_into(self, "cnn", num_classes=num_classes, width=width, hidden=hidden)


class BasicBlock(Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut: ``relu(f(x) + x)``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(cout)
        self.conv2 = Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = Sequential(
                Conv2d(cin, cout, 1, stride=stride, bias=False), BatchNorm2d(cout)
            )
        else:
            self.shortcut = Identity()

    def _bn1_relu(self, x):
        # fused as in Sequential (batch_norm_relu), unless a hook on bn1 must see its output
        return F.relu(self.bn1(x)) if has_hooks(self.bn1) else self.bn1.forward(x, relu=True)

    def forward(self, x):
        out = self.conv2(self._bn1_relu(self.conv1(x)))
        if has_hooks(self.bn2):  # the hooks see bn2's own output
            return F.add_relu(self.bn2(out), self.shortcut(x))
        # relu(bn2(out) + shortcut) as one op (F.batch_norm's residual)
        return self.bn2.forward(out, relu=True, residual=self.shortcut(x))


class ResNetSmall(Module):
    """A small ResNet: a 3x3 stem, three stages of residual blocks (widths w, 2w, 4w, the last
    two halving the resolution), global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16, blocks_per_stage: int = 1):
        super().__init__()
        self.stem = Sequential(*_conv_bn_relu(1, width))
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks_per_stage):
                stages.append(BasicBlock(cin, cout, stride=2 if i > 0 and b == 0 else 1))
                cin = cout
        self.stages = Sequential(*stages)
        self.pool = AdaptiveAvgPool2d(1)
        self.fc = Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(x.flatten(1))


class VGGSmall(Sequential):
    """VGG's pattern (Simonyan and Zisserman 2014) at 28x28: stages of ``convs_per_stage`` 3x3
    conv-BatchNorm-ReLU layers, each stage ending in a 2x2 max-pool that halves the resolution
    while the next stage doubles the channels, then a small classifier: ``Flatten -> Linear ->
    ReLU -> Dropout -> Linear``. ``image_size`` is the input's side (the hidden layer's input
    size depends on it); each pool floors it, as ``MaxPool2d(2)`` does.

    NOTE: widths (32, 64, 128), two convs a stage (28 -> 14 -> 7 -> 3). The third stage is
    what VGG adds over MnistCNN's two (six 3x3 convs deep); at 7x7 it costs about what the
    second stage does, and the 256-wide hidden layer sees only 128x3x3 features, so a training
    step measured 286 ms against MnistCNN's 277 ms (``tinydl train --profile 5``, batch 128,
    2-core CPU, Numba kernels): about two minutes an MNIST epoch, in the zoo's range.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        widths=(32, 64, 128),
        convs_per_stage: int = 2,
        hidden: int = 256,
        dropout: float = 0.5,
        image_size: int = 28,
    ):
        layers, cin = [], in_channels
        for cout in widths:
            for _ in range(convs_per_stage):
                layers += _conv_bn_relu(cin, cout)
                cin = cout
            layers.append(MaxPool2d(2))
            image_size //= 2
        layers += [Flatten(), Linear(cin * image_size * image_size, hidden), ReLU()]
        super().__init__(*layers, Dropout(dropout), Linear(hidden, num_classes))


MODELS = {
    "mlp": MLP,
    "lenet": LeNet5,
    "cnn": MnistCNN,
    "resnet": ResNetSmall,
    "vgg": VGGSmall,
}
