"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d`` (thin Modules over F.conv2d and
F.conv_transpose2d, with torch's arguments and initialisation)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..functional.validation import (
    IntOrPair,
    check_groups,
    conv_padding,
    positive_int,
    to_pair,
)
from .weight_layer import _WeightLayer

__all__ = ["Conv2d", "ConvTranspose2d"]


def _channels(op: str, in_channels: Any, out_channels: Any, groups: Any) -> tuple[int, int, int]:
    """Positive channel counts, both divisible by a positive ``groups``."""
    c_in = positive_int(in_channels, "in_channels", op)
    c_out = positive_int(out_channels, "out_channels", op)
    return c_in, c_out, check_groups(groups, c_in, c_out, op)


class Conv2d(_WeightLayer):
    """2-D convolution (cross-correlation, as in every framework).

    x: (N, in_channels, H, W) -> (N, out_channels, H', W') with
    ``H' = floor((H + 2*padding - dilation*(k-1) - 1) / stride) + 1``.
    weight (out_channels, in_channels/groups, kH, kW), initialised as in torch.
    ``padding`` may be an int, a pair, 'valid' (0) or 'same' (stride 1 only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: IntOrPair | str = 0, dilation: IntOrPair = 1,
                 groups: int = 1, bias: bool = True, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        op = "Conv2d"
        self.in_channels, self.out_channels, self.groups = _channels(op, in_channels,
                                                                     out_channels, groups)
        self.kernel_size = to_pair(kernel_size, "kernel_size", op)
        self.stride = to_pair(stride, "stride", op)
        self.dilation = to_pair(dilation, "dilation", op)
        self.padding = conv_padding(padding, self.stride, op)
        self._build((self.out_channels, self.in_channels // self.groups, *self.kernel_size),
                    self.out_channels if bias else None, dtype, device, weight_regularizer,
                    bias_regularizer, weight_constraint, trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}, "
                             f"kernel_size={self.kernel_size}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        y = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups)
        return self._activate(y)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + self._reg_repr()


class ConvTranspose2d(_WeightLayer):
    """Transposed convolution (the gradient of conv2d w.r.t. its input), for upsampling.

    x: (N, in_channels, H, W) -> (N, out_channels, H', W') with
    ``H' = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1``, where
    ``output_padding`` is smaller than the stride or the dilation, as torch requires.
    weight (in_channels, out_channels/groups, kH, kW), initialised as in torch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: IntOrPair = 0, output_padding: IntOrPair = 0,
                 groups: int = 1, bias: bool = True, dilation: IntOrPair = 1, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        op = "ConvTranspose2d"
        self.in_channels, self.out_channels, self.groups = _channels(op, in_channels,
                                                                     out_channels, groups)
        self.kernel_size = to_pair(kernel_size, "kernel_size", op)
        self.stride = to_pair(stride, "stride", op)
        self.padding = to_pair(padding, "padding", op, allow_zero=True)
        self.output_padding = to_pair(output_padding, "output_padding", op, allow_zero=True)
        self.dilation = to_pair(dilation, "dilation", op)
        self._build((self.in_channels, self.out_channels // self.groups, *self.kernel_size),
                    self.out_channels if bias else None, dtype, device, weight_regularizer,
                    bias_regularizer, weight_constraint, trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d({self.in_channels}, {self.out_channels}, "
                             f"kernel_size={self.kernel_size}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride,
                               padding=self.padding, output_padding=self.output_padding,
                               groups=self.groups, dilation=self.dilation)
        return self._activate(y)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s + self._reg_repr()
