"""DenseNet (Huang, Liu, van der Maaten and Weinberger 2017).

``densenet121/169/201`` match torchvision (DenseNet-BC, growth 32, bottleneck width 4k,
compression 0.5), key names included (``features.denseblock1.denselayer1.norm1.weight``):
7,978,856 parameters for DenseNet-121. ``densenet_cifar()`` is a small DenseNet-BC for
32x32 inputs (3x3 stem, three dense blocks).

A dense layer is a concatenation node: its output is ``cat([x, H(x)])``, its input with
``growth_rate`` new maps appended, so a dense block is a Sequential of dense layers and
every layer sees the maps of all the layers before it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..nn import AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential, init
from ._fusing import bn_relu

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet", "densenet121", "densenet169",
           "densenet201", "densenet_cifar"]


class DenseLayer(Module):
    """BN-ReLU-1x1 conv (bn_size*k maps)-BN-ReLU-3x3 conv (k maps), appended to the input.

    (N, C, H, W) -> (N, C + growth_rate, H, W).
    """

    def __init__(self, cin: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = BatchNorm2d(cin)
        self.relu1 = ReLU()
        self.conv1 = Conv2d(cin, bn_size * growth_rate, 1, bias=False)
        self.norm2 = BatchNorm2d(bn_size * growth_rate)
        self.relu2 = ReLU()
        self.conv2 = Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv1(bn_relu(self.norm1, self.relu1, x))
        new = self.conv2(bn_relu(self.norm2, self.relu2, new))
        if self.drop_rate > 0:
            new = F.dropout(new, self.drop_rate, self.training)
        return F.cat([x, new], axis=1)


class DenseBlock(Sequential):
    """``num_layers`` dense layers named denselayer1..L: (N, C, H, W) -> (N, C + L*k, H, W)."""

    def __init__(self, num_layers: int, cin: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0) -> None:
        super().__init__(OrderedDict(
            (f"denselayer{i + 1}", DenseLayer(cin + i * growth_rate, growth_rate, bn_size,
                                              drop_rate))
            for i in range(num_layers)))


class Transition(Sequential):
    """BN-ReLU-1x1 conv-2x2 average pool: (N, C, H, W) -> (N, cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(OrderedDict([
            ("norm", BatchNorm2d(cin)), ("relu", ReLU()),
            ("conv", Conv2d(cin, cout, 1, bias=False)), ("pool", AvgPool2d(2, stride=2))]))


class DenseNet(Module):
    """DenseNet-BC: ``features`` (stem, dense blocks, transitions, final BN) and
    ``classifier``. x: (N, 3, H, W) -> (N, num_classes).

    ``small_inputs=True`` uses a 3x3 stem without pooling (for 32x32 images).
    """

    head_name = "classifier"

    def __init__(self, growth_rate: int = 32, block_config: tuple[int, ...] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0,
                 num_classes: int = 1000, compression: float = 0.5, small_inputs: bool = False,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32) if small_inputs else (in_channels, 224, 224)
        if small_inputs:
            stem = [("conv0", Conv2d(in_channels, num_init_features, 3, padding=1,
                                     bias=False))]
        else:
            stem = [("conv0", Conv2d(in_channels, num_init_features, 7, stride=2, padding=3,
                                     bias=False)),
                    ("norm0", BatchNorm2d(num_init_features)), ("relu0", ReLU()),
                    ("pool0", MaxPool2d(3, stride=2, padding=1))]
        self.features = Sequential(OrderedDict(stem))
        c = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}",
                                     DenseBlock(n, c, growth_rate, bn_size, drop_rate))
            c += n * growth_rate
            if i != len(block_config) - 1:
                out = int(c * compression)
                self.features.add_module(f"transition{i + 1}", Transition(c, out))
                c = out
        self.features.add_module("norm5", BatchNorm2d(c))
        self.num_features = c
        self.classifier = Linear(c, num_classes)
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight)
            elif isinstance(m, Linear):
                init.zeros_(m.bias)

    def codes(self, x: Tensor) -> Tensor:
        """The pooled CNN codes: (N, 3, H, W) -> (N, num_features), the classifier's input."""
        x = F.relu(self.features(x))
        return F.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.codes(x))


def densenet121(num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-121 (7,978,856 parameters; 2.83 GMACs at 224x224)."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, **kw)


def densenet169(num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-169 (14,149,480 parameters)."""
    return DenseNet(32, (6, 12, 32, 32), 64, num_classes=num_classes, **kw)


def densenet201(num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-201 (20,013,928 parameters)."""
    return DenseNet(32, (6, 12, 48, 32), 64, num_classes=num_classes, **kw)


def densenet_cifar(depth: int = 40, growth_rate: int = 12, num_classes: int = 10,
                   **kw: Any) -> DenseNet:
    """A small DenseNet-BC for 32x32 inputs: 3 dense blocks of (depth-4)/6 bottleneck layers,
    growth ``growth_rate``, 2k-map 3x3 stem. Depth 40, k=12 has 176,122 parameters with 10
    classes. (N, 3, 32, 32) -> (N, num_classes).
    """
    if (depth - 4) % 6:
        raise ValueError(f"densenet_cifar: depth must be 6n+4 (22, 40, 100, ...), got {depth}")
    n = (depth - 4) // 6
    return DenseNet(growth_rate, (n, n, n), 2 * growth_rate, num_classes=num_classes,
                    small_inputs=True, **kw)
