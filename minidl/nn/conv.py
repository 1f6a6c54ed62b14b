"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d`` (thin Modules over F.conv2d and
F.conv_transpose2d, with torch's arguments and initialisation)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .weight_layer import _empty, _WeightLayer

__all__ = ["Conv2d", "ConvTranspose2d"]

IntPair = int | tuple[int, int]


def _pair(v: IntPair, what: str, layer: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{layer}: {what} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]
                  ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(before, after) padding per spatial dim that keeps the size at stride 1."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out[0], out[1]


class Conv2d(_WeightLayer):
    """2-D convolution (cross-correlation, as in every framework).

    x: (N, in_channels, H, W) -> (N, out_channels, H', W') with
    ``H' = floor((H + 2*padding - dilation*(k-1) - 1) / stride) + 1``.
    weight (out_channels, in_channels/groups, kH, kW), initialised as in torch.
    ``padding`` may be an int, a pair, 'valid' (0) or 'same' (stride 1 only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair | str = 0, dilation: IntPair = 1,
                 groups: int = 1, bias: bool = True, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.dilation = _pair(dilation, "dilation", "Conv2d")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("Conv2d: padding='same' needs stride 1 (as in torch)")
            self.padding: Any = padding
        else:
            self.padding = _pair(padding, "padding", "Conv2d")
        self.weight = _empty((out_channels, in_channels // groups, *self.kernel_size), dtype,
                             device)
        self.bias = _empty((out_channels,), dtype, device) if bias else None
        self._init_torch_default()
        self._keras_options(weight_regularizer, bias_regularizer, weight_constraint,
                            trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}, "
                             f"kernel_size={self.kernel_size}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        padding = self.padding
        if padding == "valid":
            padding = 0
        elif padding == "same":
            (t, b), (left, r) = _same_padding(self.kernel_size, self.dilation)
            if t == b and left == r:
                padding = (t, left)
            else:  # an even kernel needs one more row/column after than before (as torch)
                x = F.pad(x, (left, r, t, b))
                padding = 0
        y = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=padding,
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
    ``H' = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1``.
    weight (in_channels, out_channels/groups, kH, kW), initialised as in torch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                 groups: int = 1, bias: bool = True, dilation: IntPair = 1, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvTranspose2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size", "ConvTranspose2d")
        self.stride = _pair(stride, "stride", "ConvTranspose2d")
        self.padding = _pair(padding, "padding", "ConvTranspose2d")
        self.output_padding = _pair(output_padding, "output_padding", "ConvTranspose2d")
        self.dilation = _pair(dilation, "dilation", "ConvTranspose2d")
        self.weight = _empty((in_channels, out_channels // groups, *self.kernel_size), dtype,
                             device)
        self.bias = _empty((out_channels,), dtype, device) if bias else None
        self._init_torch_default()
        self._keras_options(weight_regularizer, bias_regularizer, weight_constraint,
                            trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
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
        if self.bias is None:
            s += ", bias=False"
        return s + self._reg_repr()
