"""AlexNet (Krizhevsky, Sutskever and Hinton 2012).

``alexnet()`` is torchvision's single-tower form (64/192/384/256/256 filters, adaptive
6x6 pool; 61,100,840 parameters). ``alexnet(variant='original')`` follows the paper and the
lecture table: 227x227 input; C1 96@11x11 stride 4; LRN (k=2, n=5, alpha=1e-4, beta=0.75)
after C1 and C3 (the 2nd convolution); overlapping 3x3/2 max pooling; 256/384/384/256
filters; F9/F10 with 4096 units and 50% dropout. ``groups=2`` reproduces the two-GPU split
of C3, C6 and C7 (which saw only their own GPU's half of the maps).
"""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..nn import (
    AdaptiveAvgPool2d,
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

__all__ = ["AlexNet", "alexnet"]


class AlexNet(Module):
    """``features`` (5 convolutions), ``avgpool`` (to 6x6), ``classifier`` (3 FC layers).

    x: (N, 3, 224, 224) for torchvision's form, (N, 3, 227, 227) for 'original'
    -> (N, num_classes).
    """

    head_name = "classifier.6"

    def __init__(self, num_classes: int = 1000, variant: str = "torchvision", groups: int = 1,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if variant == "torchvision":
            if groups != 1:
                raise ValueError("alexnet: groups=2 exists only for variant='original'")
            self.features = Sequential(
                Conv2d(3, 64, 11, stride=4, padding=2), ReLU(), MaxPool2d(3, 2),
                Conv2d(64, 192, 5, padding=2), ReLU(), MaxPool2d(3, 2),
                Conv2d(192, 384, 3, padding=1), ReLU(),
                Conv2d(384, 256, 3, padding=1), ReLU(),
                Conv2d(256, 256, 3, padding=1), ReLU(), MaxPool2d(3, 2))
        elif variant == "original":
            if groups not in (1, 2):
                raise ValueError(f"alexnet: groups must be 1 or 2, got {groups}")
            self.features = Sequential(
                Conv2d(3, 96, 11, stride=4), ReLU(),                            # C1
                LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), MaxPool2d(3, 2),  # S2
                Conv2d(96, 256, 5, padding=2, groups=groups), ReLU(),          # C3
                LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), MaxPool2d(3, 2),  # S4
                Conv2d(256, 384, 3, padding=1), ReLU(),                        # C5
                Conv2d(384, 384, 3, padding=1, groups=groups), ReLU(),        # C6
                Conv2d(384, 256, 3, padding=1, groups=groups), ReLU(),        # C7
                MaxPool2d(3, 2))                                               # S8
            # The paper: N(0, 0.01) weights; biases 1 in C3, C6, C7 and the FC layers.
            for i, m in enumerate(self.features):
                if isinstance(m, Conv2d):
                    init.normal_(m.weight, 0.0, 0.01)
                    init.constant_(m.bias, 1.0 if i in (4, 10, 12) else 0.0)
        else:
            raise ValueError(f"alexnet: variant must be 'torchvision' or 'original', got "
                             f"{variant!r}")
        self.variant, self.groups = variant, groups
        self.input_shape = (3, 227, 227) if variant == "original" else (3, 224, 224)
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.classifier = Sequential(
            Dropout(dropout), Linear(256 * 6 * 6, 4096), ReLU(),                # F9
            Dropout(dropout), Linear(4096, 4096), ReLU(),                       # F10
            Linear(4096, num_classes))                                          # F11
        if variant == "original":
            for m in self.classifier:
                if isinstance(m, Linear):
                    init.normal_(m.weight, 0.0, 0.01)
                    init.constant_(m.bias, 1.0 if m.out_features == 4096 else 0.0)

    def codes(self, x: Tensor) -> Tensor:
        """The 4096-d CNN codes (the ReLU'd F10 output): (N, 3, H, W) -> (N, 4096)."""
        x = F.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:-1](x)

    def forward(self, x: Tensor) -> Tensor:
        x = F.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def alexnet(num_classes: int = 1000, variant: str = "torchvision", groups: int = 1,
            **kw: Any) -> AlexNet:
    """AlexNet: torchvision's form (61,100,840 params) or ``variant='original'`` (paper,
    62,378,344 params; 60,965,224 with ``groups=2``). (N, 3, 224|227, 224|227) -> logits.
    """
    return AlexNet(num_classes=num_classes, variant=variant, groups=groups, **kw)
