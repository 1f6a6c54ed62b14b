"""GoogLeNet / Inception v1 (Szegedy et al. 2014).

``googlenet()`` matches torchvision: every convolution is conv (no bias) + BatchNorm
(eps 1e-3) + ReLU, and the "5x5" branch is a 3x3 (a known torchvision quirk kept for weight
compatibility): 6,624,904 parameters, 13,004,888 with the two auxiliary classifiers.
``googlenet(faithful=True)`` follows the paper: conv + bias + ReLU, true 5x5 branches and
LRN after the stem's first pool and its 3x3 convolution: 6,998,552 / 13,378,280.

In training mode a model with ``aux_logits=True`` returns ``GoogLeNetOutputs(logits,
aux_logits2, aux_logits1)``; :func:`googlenet_loss` weights the auxiliary losses by 0.3 as
the paper does. In eval mode the model returns the main logits only.

``Inception`` and ``InceptionNaive`` are ``Concat`` graph nodes with named branches.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .. import functional as F
from ..autograd import Tensor
from ..nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Concat,
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
from ._fusing import bn_relu

__all__ = ["GoogLeNet", "googlenet", "Inception", "InceptionNaive", "InceptionAux",
           "BasicConv2d", "GoogLeNetOutputs", "googlenet_loss"]


class BasicConv2d(Module):
    """conv + BatchNorm + ReLU (torchvision), or conv with bias + ReLU (``bn=False``, paper).

    (N, cin, H, W) -> (N, cout, H', W').
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bn: bool = True) -> None:
        super().__init__()
        self.conv = Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=not bn)
        self.bn = BatchNorm2d(cout, eps=0.001) if bn else None
        self.relu = ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            return bn_relu(self.bn, self.relu, x)
        return self.relu(x)


class Inception(Concat):
    """The inception module with 1x1 bottlenecks: four branches joined along channels.

    branch1: 1x1 (ch1x1); branch2: 1x1 (ch3x3red) -> 3x3 (ch3x3); branch3: 1x1 (ch5x5red)
    -> kxk (ch5x5; k = 5, or 3 as in torchvision); branch4: 3x3/1 max pool -> 1x1
    (pool_proj). (N, cin, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).
    """

    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, bn: bool = True, k5: int = 3) -> None:
        super().__init__()
        self.add_module("branch1", BasicConv2d(cin, ch1x1, 1, bn=bn))
        self.add_module("branch2", Sequential(BasicConv2d(cin, ch3x3red, 1, bn=bn),
                                              BasicConv2d(ch3x3red, ch3x3, 3, padding=1, bn=bn)))
        self.add_module("branch3", Sequential(
            BasicConv2d(cin, ch5x5red, 1, bn=bn),
            BasicConv2d(ch5x5red, ch5x5, k5, padding=k5 // 2, bn=bn)))
        self.add_module("branch4", Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                              BasicConv2d(cin, pool_proj, 1, bn=bn)))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj


class InceptionNaive(Concat):
    """The naive inception module: 1x1, 3x3 and 5x5 convolutions and a 3x3 max pool of the
    same input, concatenated. (N, cin, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + cin, H, W).
    """

    def __init__(self, cin: int, ch1x1: int, ch3x3: int, ch5x5: int, bn: bool = False) -> None:
        super().__init__()
        self.add_module("branch1", BasicConv2d(cin, ch1x1, 1, bn=bn))
        self.add_module("branch2", BasicConv2d(cin, ch3x3, 3, padding=1, bn=bn))
        self.add_module("branch3", BasicConv2d(cin, ch5x5, 5, padding=2, bn=bn))
        self.add_module("branch4", MaxPool2d(3, stride=1, padding=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + cin


class InceptionAux(Module):
    """Auxiliary classifier: average pool to 4x4, 1x1 conv (128), FC 1024, 70% dropout, FC.

    (N, cin, H, W) -> (N, num_classes). The faithful form pools 5x5 with stride 3 at the
    paper's 14x14 size; other sizes (and torchvision's form) pool adaptively to 4x4.
    """

    def __init__(self, cin: int, num_classes: int, bn: bool = True, dropout: float = 0.7,
                 faithful: bool = False) -> None:
        super().__init__()
        self.faithful = faithful
        self.conv = BasicConv2d(cin, 128, 1, bn=bn)
        self.fc1 = Linear(2048, 1024)
        self.fc2 = Linear(1024, num_classes)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.faithful and x.shape[-2:] == (14, 14):  # the paper: 5x5/3 pool, 14 -> 4
            x = F.avg_pool2d(x, 5, 3)
        else:
            x = F.adaptive_avg_pool2d(x, (4, 4))
        x = F.flatten(self.conv(x), 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs of a GoogLeNet with auxiliary classifiers."""

    logits: Tensor
    aux_logits2: Tensor | None
    aux_logits1: Tensor | None


def googlenet_loss(outputs: Any, target: Any, aux_weight: float = 0.3) -> Tensor:
    """Cross-entropy of the main logits plus ``aux_weight`` times each auxiliary loss.

    ``outputs`` is a model's output: a GoogLeNetOutputs in training, or plain logits.
    """
    if isinstance(outputs, GoogLeNetOutputs):
        loss = F.cross_entropy(outputs.logits, target)
        for aux in (outputs.aux_logits1, outputs.aux_logits2):
            if aux is not None:
                loss = loss + aux_weight * F.cross_entropy(aux, target)
        return loss
    return F.cross_entropy(outputs, target)


# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of Table 1.
_CFG = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(Module):
    """GoogLeNet: stem, nine inception modules, global average pool, dropout, fc.

    x: (N, 3, 224, 224) -> (N, num_classes) (eval), or GoogLeNetOutputs in training with
    ``aux_logits``. ``features(x)`` gives the pooled (N, 1024) codes.
    """

    head_name = "fc"

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True,
                 faithful: bool = False, transform_input: bool = False,
                 dropout: float | None = None, init_weights: bool = True) -> None:
        super().__init__()
        bn = not faithful
        self.input_shape = (3, 224, 224)
        self.aux_logits, self.faithful, self.transform_input = aux_logits, faithful, \
            transform_input
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3, bn=bn)
        self.maxpool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if faithful else None
        self.conv2 = BasicConv2d(64, 64, 1, bn=bn)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, bn=bn)
        self.lrn2 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if faithful else None
        self.maxpool2 = MaxPool2d(3, stride=2, ceil_mode=True)
        k5 = 5 if faithful else 3
        for name in ("3a", "3b"):
            self.add_module(f"inception{name}", Inception(*_CFG[name], bn=bn, k5=k5))
        self.maxpool3 = MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("4a", "4b", "4c", "4d", "4e"):
            self.add_module(f"inception{name}", Inception(*_CFG[name], bn=bn, k5=k5))
        self.maxpool4 = MaxPool2d(2, stride=2, ceil_mode=True)
        for name in ("5a", "5b"):
            self.add_module(f"inception{name}", Inception(*_CFG[name], bn=bn, k5=k5))
        if aux_logits:
            self.aux1: InceptionAux | None = InceptionAux(512, num_classes, bn=bn,
                                                          faithful=faithful)
            self.aux2: InceptionAux | None = InceptionAux(528, num_classes, bn=bn,
                                                          faithful=faithful)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.dropout = Dropout(dropout if dropout is not None else (0.4 if faithful else 0.2))
        self.fc = Linear(1024, num_classes)
        if init_weights:
            # torchvision: N(0, 0.01) truncated at +-2 (the paper does not say).
            for m in self.modules():
                if isinstance(m, (Conv2d, Linear)):
                    init.trunc_normal_(m.weight, 0.0, 0.01, -2.0, 2.0)
                    if m.bias is not None:
                        init.zeros_(m.bias)

    def _transform(self, x: Tensor) -> Tensor:
        # torchvision's pretrained weights expect inputs normalised the Inception way.
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        chans = [x[:, i:i + 1] * (std[i] / 0.5) + (mean[i] - 0.5) / 0.5 for i in range(3)]
        return F.cat(chans, axis=1)

    def _stem(self, x: Tensor) -> Tensor:
        if self.transform_input:
            x = self._transform(x)
        x = self.maxpool1(self.conv1(x))
        if self.lrn1 is not None:
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))
        if self.lrn2 is not None:
            x = self.lrn2(x)
        return self.maxpool2(x)

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x = self._stem(x)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return F.flatten(self.avgpool(x), 1), aux1, aux2

    def features(self, x: Tensor) -> Tensor:
        """The CNN codes: (N, 3, H, W) -> (N, 1024), the input of the dropout + ``fc``."""
        return self._trunk(x)[0]

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        codes, aux1, aux2 = self._trunk(x)
        logits = self.fc(self.dropout(codes))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits


def googlenet(num_classes: int = 1000, aux_logits: bool = True, faithful: bool = False,
              **kw: Any) -> GoogLeNet:
    """GoogLeNet: torchvision's form (6,624,904 params; 13,004,888 with aux classifiers)
    or ``faithful=True`` (the paper's: 6,998,552 / 13,378,280). (N, 3, 224, 224) -> logits.
    """
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, faithful=faithful, **kw)
