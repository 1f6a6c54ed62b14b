"""ResNet (He, Zhang, Ren and Sun 2015): the ImageNet nets, their plain twins, the CIFAR nets.

* ``resnet18/34/50/101/152`` match torchvision (v1.5: a bottleneck strides in its 3x3),
  with torchvision's state-dict names (``layer1.0.conv1.weight``, ``layer2.0.downsample.0``).
* ``plain18/34`` are the same stacks without shortcuts (the degradation experiment).
* ``cifar_resnet(depth)`` is the 6n+2 network of section 4.2 for 32x32 inputs (16/32/64
  filters) with option-A shortcuts: identity, and for a change of size a stride-2
  subsample padded with zero channels, so shortcuts add no parameters.
  ``cifar_resnet(depth, plain=True)`` is its plain twin. These are built from the
  ``Residual`` graph node: a block is ``Sequential(Residual(body, shortcut), ReLU())``.

The ImageNet blocks write their sum inline (``relu(bn2(...) + shortcut)``) because
torchvision's key names (``conv1``, ``bn1``, ``downsample``) live directly on the block.

Every block runs batch norm + ReLU and the residual add + ReLU as one fused node each
(minidl.functional.fused, through models/_fusing.py; GoogLeNet and DenseNet do the same),
which gives the same bits as the two modules would; it does so only while no hook observes
the modules it skips (summary, flow recorders and user hooks see every module called as
before), and batch norm + ReLU only in training mode.
"""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Residual,
    Sequential,
    init,
)
from ._fusing import add_relu, bn_relu, unobserved

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "plain18", "plain34", "CifarResNet", "cifar_resnet",
           "ShortcutA", "CifarBasicBlock", "cifar_basic_block"]


def conv3x3(cin: int, cout: int, stride: int = 1) -> Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> Conv2d:
    """1x1 convolution without bias (a BatchNorm follows)."""
    return Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(Module):
    """Two 3x3 convolutions: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    (N, in_planes, H, W) -> (N, planes, H/stride, W/stride). ``shortcut=False`` gives the
    plain block (no addition). The shortcut is the identity, or ``downsample`` (1x1 conv +
    BN, option B) when the shape changes.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.use_shortcut = shortcut
        if shortcut and (stride != 1 or in_planes != planes):
            self.downsample: Module | None = Sequential(conv1x1(in_planes, planes, stride),
                                                        BatchNorm2d(planes))
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        out = bn_relu(self.bn1, self.relu, self.conv1(x))
        out = self.conv2(out)
        if not self.use_shortcut:
            return bn_relu(self.bn2, self.relu, out)
        return add_relu(self.relu, self.bn2(out),
                         x if self.downsample is None else self.downsample(x))


class Bottleneck(Module):
    """1x1 reduce, 3x3 (strided, as torchvision's v1.5), 1x1 expand x4, plus shortcut.

    (N, in_planes, H, W) -> (N, 4*planes, H/stride, W/stride).
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 shortcut: bool = True) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out)
        self.bn3 = BatchNorm2d(out)
        self.relu = ReLU()
        self.use_shortcut = shortcut
        if shortcut and (stride != 1 or in_planes != out):
            self.downsample: Module | None = Sequential(conv1x1(in_planes, out, stride),
                                                        BatchNorm2d(out))
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        out = bn_relu(self.bn1, self.relu, self.conv1(x))
        out = bn_relu(self.bn2, self.relu, self.conv2(out))
        out = self.conv3(out)
        if not self.use_shortcut:
            return bn_relu(self.bn3, self.relu, out)
        return add_relu(self.relu, self.bn3(out),
                         x if self.downsample is None else self.downsample(x))


class ResNet(Module):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max pool, four stages, global average pool, fc.

    x: (N, 3, H, W) (224x224 in the paper; anything >= 32 works) -> (N, num_classes).
    ``features(x)`` gives the pooled (N, 512 * expansion) codes before ``fc``.
    """

    head_name = "fc"

    def __init__(self, block: type, layers: list[int], num_classes: int = 1000,
                 shortcut: bool = True, zero_init_residual: bool = False,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.in_planes = 64
        self.input_shape = (in_channels, 224, 224)
        self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, shortcut)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, shortcut)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, shortcut)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, shortcut)
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(512 * block.expansion, num_classes)
        # torchvision's initialisation: He normal (fan_out) for convolutions, BN = identity.
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    init.zeros_(m.bn2.weight)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int,
                    shortcut: bool) -> Sequential:
        layers = [block(self.in_planes, planes, stride, shortcut)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes, 1, shortcut) for _ in range(blocks - 1)]
        return Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        """The CNN codes: (N, 3, H, W) -> (N, 512 * expansion), the input of ``fc``."""
        x = self.maxpool(bn_relu(self.bn1, self.relu, self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def _resnet(block: type, layers: list[int], shortcut: bool, **kw: Any) -> ResNet:
    return ResNet(block, layers, shortcut=shortcut, **kw)


def resnet18(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-18 (11,689,512 parameters with 1000 classes; 1.81 GMACs at 224x224)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], True, num_classes=num_classes, **kw)


def resnet34(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-34 (21,797,672 parameters)."""
    return _resnet(BasicBlock, [3, 4, 6, 3], True, num_classes=num_classes, **kw)


def resnet50(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-50, bottleneck blocks (25,557,032 parameters; 4.09 GMACs)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], True, num_classes=num_classes, **kw)


def resnet101(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-101 (44,549,160 parameters)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], True, num_classes=num_classes, **kw)


def resnet152(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-152 (60,192,808 parameters)."""
    return _resnet(Bottleneck, [3, 8, 36, 3], True, num_classes=num_classes, **kw)


def plain18(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-18 without shortcuts (the paper's plain-18)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], False, num_classes=num_classes, **kw)


def plain34(num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-34 without shortcuts (the paper's plain-34)."""
    return _resnet(BasicBlock, [3, 4, 6, 3], False, num_classes=num_classes, **kw)


# ---- CIFAR ResNets (section 4.2) ---------------------------------------------------------

class ShortcutA(Module):
    """Option-A shortcut: take every ``stride``-th pixel and pad the new channels with zeros.

    (N, C, H, W) -> (N, out_channels, H/stride, W/stride); no parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ShortcutA: out_channels ({out_channels}) < in_channels "
                             f"({in_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class CifarBasicBlock(Sequential):
    """``Sequential(Residual(body, shortcut), ReLU())``, or ``Sequential(body, ReLU())``
    plain, with body ``conv-bn-relu-conv-bn``: a Sequential in every respect (children,
    state-dict keys, hooks), whose forward runs bn + relu and add + relu fused while the
    modules it skips have no hooks (see the module docstring); any other content runs as
    a plain Sequential.
    """

    def forward(self, x: Tensor) -> Tensor:
        if len(self) != 2:
            return super().forward(x)
        first, relu = self[0], self[1]
        res = first if type(first) is Residual else None
        body = first.block if res is not None else first
        if type(body) is not Sequential or len(body) != 5 or not unobserved(first, body):
            return super().forward(x)
        conv1, bn1, relu1, conv2, bn2 = body
        out = conv2(bn_relu(bn1, relu1, conv1(x)))
        if res is None:
            return bn_relu(bn2, relu, out)
        out = bn2(out)
        s = x if res.shortcut is None else res.shortcut(x)
        if out.shape != s.shape:  # raises Residual's own error
            return relu(res.forward(x))
        return add_relu(relu, out, s)


def cifar_basic_block(cin: int, cout: int, stride: int = 1,
                      plain: bool = False) -> CifarBasicBlock:
    """One block of the CIFAR ResNet: ``relu(Residual(conv-bn-relu-conv-bn, shortcut))``.

    (N, cin, H, W) -> (N, cout, H/stride, W/stride); the plain form drops the shortcut.
    """
    body = Sequential(conv3x3(cin, cout, stride), BatchNorm2d(cout), ReLU(),
                      conv3x3(cout, cout), BatchNorm2d(cout))
    if plain:
        return CifarBasicBlock(body, ReLU())
    shortcut = None if stride == 1 and cin == cout else ShortcutA(cin, cout, stride)
    return CifarBasicBlock(Residual(body, shortcut), ReLU())


class CifarResNet(Module):
    """6n+2 layers on 32x32 inputs: 3x3 conv (16), three stages of n blocks with 16/32/64
    filters (stride 2 between stages), global average pool, fc. (N, 3, 32, 32) -> (N, 10).
    """

    head_name = "fc"

    def __init__(self, depth: int = 20, num_classes: int = 10, plain: bool = False,
                 in_channels: int = 3, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"cifar_resnet: depth must be 6n+2 (20, 32, 44, 56, 110, ...), "
                             f"got {depth}")
        n = (depth - 2) // 6
        self.depth, self.plain = depth, plain
        self.input_shape = (in_channels, 32, 32)
        self.stem = Sequential(conv3x3(in_channels, widths[0]), BatchNorm2d(widths[0]), ReLU())
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(cifar_basic_block(cin, w, 2 if (i > 0 and j == 0) else 1, plain))
                cin = w
            stages.append(Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = Sequential(AdaptiveAvgPool2d((1, 1)), Flatten())
        self.fc = Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """(N, 3, 32, 32) -> (N, 64) pooled codes."""
        stem = self.stem
        if type(stem) is Sequential and len(stem) == 3 and unobserved(stem):
            x = bn_relu(stem[1], stem[2], stem[0](x))      # conv, then bn + relu fused
        else:
            x = stem(x)
        return self.pool(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def cifar_resnet(depth: int = 20, num_classes: int = 10, plain: bool = False,
                 **kw: Any) -> CifarResNet:
    """He et al.'s CIFAR-10 ResNet-``depth`` (20: 269,722 params; 56: 853,018; 110: 1.73M).

    ``plain=True`` gives the same stack without shortcuts.
    """
    return CifarResNet(depth, num_classes=num_classes, plain=plain, **kw)
