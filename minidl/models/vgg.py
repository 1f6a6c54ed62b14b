"""VGG (Simonyan and Zisserman 2014): configurations A, A-LRN, B, C, D and E of Table 1.

``vgg11/13/16/19`` (= A, B, D, E) and their ``_bn`` forms match torchvision, keys included
(``features.N``, ``classifier.0/3/6``). ``vgg('C')`` has the 1x1 convolutions of
configuration C; ``vgg('A-LRN')`` has local response normalisation after the first layer.
"""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    init,
)

__all__ = ["VGG", "vgg", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
           "vgg16_bn", "vgg19_bn", "CONFIGS"]

# Table 1: numbers are 3x3 conv widths, (n, 1) a 1x1 conv of width n, "M" a 2x2 max pool,
# "LRN" local response normalisation.
CONFIGS: dict[str, list[Any]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M",
          512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[Any], batch_norm: bool = False, in_channels: int = 3) -> Sequential:
    """The convolutional part of a configuration: conv (+BN) + ReLU per entry, pools."""
    layers: list[Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(2, stride=2))
        elif v == "LRN":  # Krizhevsky's settings, which the VGG paper reuses
            layers.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            width, k = v if isinstance(v, tuple) else (v, 3)
            layers.append(Conv2d(c, width, k, padding=k // 2))
            if batch_norm:
                layers.append(BatchNorm2d(width))
            layers.append(ReLU())
            c = width
    return Sequential(*layers)


class VGG(Module):
    """``features`` (convolutions), 7x7 adaptive average pool, ``classifier`` (3 FC layers).

    x: (N, 3, H, W) with H, W >= 32 (224 in the paper) -> (N, num_classes).
    """

    head_name = "classifier.6"

    def __init__(self, features: Sequential, num_classes: int = 1000, dropout: float = 0.5,
                 init_weights: bool = True) -> None:
        super().__init__()
        self.features = features
        self.input_shape = (3, 224, 224)
        self.avgpool = AdaptiveAvgPool2d((7, 7))
        self.classifier = Sequential(
            Linear(512 * 7 * 7, 4096), ReLU(), Dropout(dropout),
            Linear(4096, 4096), ReLU(), Dropout(dropout),
            Linear(4096, num_classes))
        if init_weights:  # torchvision's scheme
            for m in self.modules():
                if isinstance(m, Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    init.zeros_(m.bias)
                elif isinstance(m, Linear):
                    init.normal_(m.weight, 0.0, 0.01)
                    init.zeros_(m.bias)

    def codes(self, x: Tensor) -> Tensor:
        """The 4096-d CNN codes (input of the last layer): (N, 3, H, W) -> (N, 4096)."""
        x = F.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:-1](x)

    def forward(self, x: Tensor) -> Tensor:
        x = F.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def vgg(config: str = "D", batch_norm: bool = False, num_classes: int = 1000,
        **kw: Any) -> VGG:
    """VGG by configuration letter: 'A', 'A-LRN', 'B', 'C', 'D' or 'E' (Table 1 of the paper).

    (N, 3, 224, 224) -> (N, num_classes). 'A' = vgg11, 'B' = vgg13, 'D' = vgg16, 'E' = vgg19.
    """
    key = config.upper()
    if key not in CONFIGS:
        raise ValueError(f"vgg: unknown configuration {config!r}; expected one of "
                         f"{sorted(CONFIGS)}")
    return VGG(make_layers(CONFIGS[key], batch_norm), num_classes=num_classes, **kw)


def vgg11(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-11, configuration A (132,863,336 parameters)."""
    return vgg("A", False, num_classes, **kw)


def vgg13(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-13, configuration B (133,047,848 parameters)."""
    return vgg("B", False, num_classes, **kw)


def vgg16(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-16, configuration D (138,357,544 parameters; 15.47 GMACs at 224x224)."""
    return vgg("D", False, num_classes, **kw)


def vgg19(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-19, configuration E (143,667,240 parameters)."""
    return vgg("E", False, num_classes, **kw)


def vgg11_bn(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-11 with batch normalisation (+5,504 parameters)."""
    return vgg("A", True, num_classes, **kw)


def vgg13_bn(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-13 with batch normalisation (+5,888 parameters)."""
    return vgg("B", True, num_classes, **kw)


def vgg16_bn(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-16 with batch normalisation (+8,448 parameters)."""
    return vgg("D", True, num_classes, **kw)


def vgg19_bn(num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-19 with batch normalisation (+11,008 parameters)."""
    return vgg("E", True, num_classes, **kw)
