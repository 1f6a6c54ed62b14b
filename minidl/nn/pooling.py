"""Pooling layers: max, average, adaptive-average and global-average pooling."""
from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor
from ..functional.validation import IntOrPair, check_ndim, to_pair
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool2d"]


def _check_window(op: str, kernel_size: IntOrPair, stride: IntOrPair | None,
                  padding: IntOrPair) -> None:
    """Fail at construction on a bad window; the layer keeps the arguments as given."""
    to_pair(kernel_size, "kernel_size", op)
    if stride not in (None, ()):
        to_pair(stride, "stride", op)
    to_pair(padding, "padding", op, allow_zero=True)


class MaxPool2d(Module):
    """Max over kernel_size windows. (N, C, H, W) -> (N, C, H', W'); stride defaults to
    kernel_size."""

    def __init__(self, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                 padding: IntOrPair = 0, ceil_mode: bool = False) -> None:
        super().__init__()
        _check_window("MaxPool2d", kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode = ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}" + (", ceil_mode=True" if self.ceil_mode else ""))


class AvgPool2d(Module):
    """Mean over kernel_size windows. (N, C, H, W) -> (N, C, H', W')."""

    def __init__(self, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                 padding: IntOrPair = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        _check_window("AvgPool2d", kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}")


class AdaptiveAvgPool2d(Module):
    """Average-pool to a fixed output size: (N, C, H, W) -> (N, C, *output_size)."""

    def __init__(self, output_size: IntOrPair) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C) (Keras' GlobalAveragePooling2D)."""

    def forward(self, x: Tensor) -> Tensor:
        check_ndim(x, 4, "input", "GlobalAvgPool2d", "(N, C, H, W)")
        return F.mean(x, axis=(2, 3))
