"""LeNet-5 (LeCun, Bottou, Bengio and Haffner 1998), in its modern form and as in the paper.

``lenet5()`` is the form most courses use today: tanh, average pooling, a dense C3 and a
linear 10-way output, 61,706 parameters. ``lenet5(variant='1998')`` is the paper's network:
trainable subsampling (S2, S4: a coefficient and a bias per map), the partial C3 connection
table of Table I, the scaled tanh ``1.7159 tanh(2a/3)``, and Euclidean RBF output units with
fixed +-1 codes: 156 + 12 + 1,516 + 32 + 48,120 + 10,164 = 60,000 trainable parameters.

Both take 32x32 inputs; 28x28 MNIST digits are padded by 2 on each side by the first layer
(:class:`PadTo`), as the paper did.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_default_device, random_uniform, to_device
from ..nn import AvgPool2d, Conv2d, Flatten, Linear, Module, Parameter, Sequential, Tanh

__all__ = ["lenet5", "LeNet5", "PadTo", "ScaledTanh", "Subsampling", "SparseConv2d",
           "RBFOutput", "C3_TABLE", "DIGIT_CODES"]


def _param(values: np.ndarray, requires_grad: bool = True) -> Parameter:
    """A Parameter on the default device, as the nn layers make theirs (the values are
    drawn on the host), so that a model built under ``md.device('cuda')`` is all on the GPU."""
    return Parameter(to_device(values, get_default_device()), requires_grad=requires_grad)


class PadTo(Module):
    """Zero-pad the last two dims symmetrically up to ``size`` (28x28 -> 32x32 for LeNet-5).

    (N, C, H, W) -> (N, C, size, size); inputs that are already ``size`` pass unchanged.
    """

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h > self.size or w > self.size:
            raise ValueError(f"PadTo({self.size}): input {tuple(x.shape)} is larger than "
                             f"{self.size}x{self.size}")
        if (h, w) == (self.size, self.size):
            return x
        dh, dw = self.size - h, self.size - w
        return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))

    def extra_repr(self) -> str:
        return f"size={self.size}"


class ScaledTanh(Module):
    """The paper's squashing function ``A tanh(S a)`` with A = 1.7159, S = 2/3 (Appendix A)."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x * self.slope) * self.amplitude


class Subsampling(Module):
    """LeNet's S-layers: the sum of each 2x2 block times a trainable coefficient, plus a
    trainable bias, per feature map (2 parameters per map). (N, C, H, W) -> (N, C, H/2, W/2).
    """

    def __init__(self, channels: int, size: int = 2) -> None:
        super().__init__()
        self.channels, self.size = channels, size
        # Start as average pooling (coefficient 1/4, bias 0); training moves both.
        self.weight = _param(np.full(channels, 1.0 / (size * size), np.float32))
        self.bias = _param(np.zeros(channels, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"Subsampling({self.channels}): expected (N, {self.channels}, H, "
                             f"W), got {tuple(x.shape)}")
        s = F.avg_pool2d(x, self.size) * float(self.size * self.size)  # window sums
        return s * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, size={self.size}"


# Table I of the paper: which S2 maps (rows 0-5) feed each C3 map (columns 0-15).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)


class SparseConv2d(Module):
    """A convolution in which output map j sees only the input maps ``table[j]``.

    Only the connected kernels are parameters (``weight`` has one (k, k) kernel per
    connection, 60 for LeNet's C3), so the parameter count is the paper's. Forward scatters
    them into a dense (out, in, k, k) kernel with zeros elsewhere and runs ``F.conv2d``;
    the gradient of the unconnected (zero) entries is simply dropped by the gather.
    (N, in, H, W) -> (N, out, H-k+1, W-k+1).
    """

    def __init__(self, in_channels: int, table: tuple[tuple[int, ...], ...],
                 kernel_size: int = 5) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, len(table)
        self.table, self.kernel_size = table, kernel_size
        n = sum(len(t) for t in table)
        index = np.zeros((len(table), in_channels), np.intp)
        mask = np.zeros((len(table), in_channels, 1, 1), np.float32)
        k = 0
        for j, inputs in enumerate(table):
            for i in inputs:
                if not 0 <= i < in_channels:
                    raise ValueError(f"SparseConv2d: table entry {j} names input map {i}, "
                                     f"but there are {in_channels}")
                index[j, i], mask[j, i] = k, 1.0
                k += 1
        self._index, self._mask = index, mask
        # The paper's init: U(-2.4/F, 2.4/F) with F the fan-in of the unit.
        fan_in = np.array([len(t) for t in table for _ in t]) * kernel_size * kernel_size
        w = random_uniform(np, (n, kernel_size, kernel_size), np.float32) * 2 - 1
        self.weight = _param((w * (2.4 / fan_in)[:, None, None]).astype(np.float32))
        self.bias = _param(np.zeros(len(table), np.float32))

    def dense_weight(self) -> Tensor:
        """The (out, in, k, k) kernel with zeros where the table has no connection."""
        mask = self._mask.astype(self.weight.dtype)
        if self.weight.device != "cpu":
            mask = to_device(mask, self.weight.device)
        return self.weight[self._index] * mask

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SparseConv2d({self.in_channels}, {self.out_channels}): expected "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return F.conv2d(x, self.dense_weight(), self.bias)

    def macs(self, inputs: tuple, output: Tensor) -> int:
        """Only connected kernels do work: out positions * connections * k * k."""
        positions = int(np.prod(output.shape)) // self.out_channels
        return positions * int(self.weight.size)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"connections={self.weight.shape[0]}")


# Stylised 7x12 bitmaps of the digits (the paper's RBF codes are +-1 pictures of the
# characters, drawn on a 7x12 grid: 84 = the width of F6).
_GLYPHS = {
    0: [" ##### ", "##   ##", "##   ##", "##  ###", "## # ##", "## # ##", "### ###", "##   ##",
        "##   ##", "##   ##", " ##### ", "       "],
    1: ["   ##  ", "  ###  ", " ####  ", "   ##  ", "   ##  ", "   ##  ", "   ##  ", "   ##  ",
        "   ##  ", "   ##  ", " ######", "       "],
    2: [" ##### ", "##   ##", "     ##", "     ##", "    ## ", "   ##  ", "  ##   ", " ##    ",
        "##     ", "##     ", "#######", "       "],
    3: [" ##### ", "##   ##", "     ##", "     ##", "  #### ", "     ##", "     ##", "     ##",
        "     ##", "##   ##", " ##### ", "       "],
    4: ["    ## ", "   ### ", "  #### ", " ## ## ", "##  ## ", "##  ## ", "#######", "    ## ",
        "    ## ", "    ## ", "    ## ", "       "],
    5: ["#######", "##     ", "##     ", "##     ", "###### ", "     ##", "     ##", "     ##",
        "     ##", "##   ##", " ##### ", "       "],
    6: ["  #### ", " ##    ", "##     ", "##     ", "###### ", "##   ##", "##   ##", "##   ##",
        "##   ##", "##   ##", " ##### ", "       "],
    7: ["#######", "     ##", "     ##", "    ## ", "    ## ", "   ##  ", "   ##  ", "  ##   ",
        "  ##   ", "  ##   ", "  ##   ", "       "],
    8: [" ##### ", "##   ##", "##   ##", "##   ##", " ##### ", "##   ##", "##   ##", "##   ##",
        "##   ##", "##   ##", " ##### ", "       "],
    9: [" ##### ", "##   ##", "##   ##", "##   ##", "##   ##", " ######", "     ##", "     ##",
        "     ##", "    ## ", " ####  ", "       "],
}
DIGIT_CODES: np.ndarray = np.array(
    [[1.0 if c == "#" else -1.0 for row in _GLYPHS[d] for c in row] for d in range(10)],
    dtype=np.float32)


class RBFOutput(Module):
    """Euclidean RBF units: ``y_i = sum_j (x_j - w_ij)^2``; returns ``-y`` as logits.

    x: (N, in_features) -> (N, num_classes). The centres ``weight`` (num_classes,
    in_features) are the paper's fixed +-1 codes (the 7x12 digit bitmaps for 10 x 84) and are
    frozen; the negated distance makes ``argmax`` and ``F.cross_entropy`` apply directly
    (cross-entropy on -y is the paper's MAP criterion without its constant class).
    """

    def __init__(self, in_features: int = 84, num_classes: int = 10) -> None:
        super().__init__()
        if (num_classes, in_features) == DIGIT_CODES.shape:
            codes = DIGIT_CODES.copy()
        else:  # other shapes: fixed random +-1 codes
            rng = np.random.default_rng(0)
            codes = np.where(rng.random((num_classes, in_features)) < 0.5, -1.0, 1.0)
        self.in_features, self.num_classes = in_features, num_classes
        self.weight = _param(codes.astype(np.float32), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"RBFOutput({self.in_features}, {self.num_classes}): expected "
                             f"(N, {self.in_features}), got {tuple(x.shape)}")
        diff = x.reshape(x.shape[0], 1, -1) - self.weight.reshape(1, *self.weight.shape)
        return -(diff * diff).sum(axis=2)

    def macs(self, inputs: tuple, output: Tensor) -> int:
        return int(output.size) * self.in_features

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


class LeNet5(Module):
    """LeNet-5: ``features`` (C1 .. F6, giving the 84-d codes) and ``classifier`` (output).

    x: (N, in_channels, 28 or 32, 28 or 32) -> (N, num_classes) logits.
    """

    head_name = "classifier"

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 variant: str = "modern") -> None:
        super().__init__()
        if variant not in ("modern", "1998"):
            raise ValueError(f"lenet5: variant must be 'modern' or '1998', got {variant!r}")
        self.variant = variant
        self.input_shape = (in_channels, 32, 32)
        if variant == "modern":
            self.features = Sequential(
                PadTo(32),
                Conv2d(in_channels, 6, 5), Tanh(), AvgPool2d(2),           # C1, S2
                Conv2d(6, 16, 5), Tanh(), AvgPool2d(2),                    # C3, S4
                Flatten(), Linear(16 * 5 * 5, 120), Tanh(),                # C5
                Linear(120, 84), Tanh())                                   # F6
            self.classifier: Module = Linear(84, num_classes)
        else:
            self.features = Sequential(
                PadTo(32),
                Conv2d(in_channels, 6, 5), ScaledTanh(),                   # C1: 156
                Subsampling(6), ScaledTanh(),                              # S2: 12
                SparseConv2d(6, C3_TABLE, 5), ScaledTanh(),                # C3: 1,516
                Subsampling(16), ScaledTanh(),                             # S4: 32
                Conv2d(16, 120, 5), ScaledTanh(), Flatten(),               # C5: 48,120
                Linear(120, 84), ScaledTanh())                             # F6: 10,164
            self.classifier = RBFOutput(84, num_classes)                   # 840, fixed

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1, variant: str = "modern",
           **kwargs: Any) -> LeNet5:
    """LeNet-5. ``variant='modern'`` (61,706 params) or ``'1998'`` (60,000 trainable).

    Input (N, 1, 32, 32) or (N, 1, 28, 28) (padded to 32 by the first layer); output
    (N, num_classes) logits.
    """
    if kwargs:
        raise TypeError(f"lenet5: unexpected arguments {sorted(kwargs)}")
    return LeNet5(num_classes=num_classes, in_channels=in_channels, variant=variant)
