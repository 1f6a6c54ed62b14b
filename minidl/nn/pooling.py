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
    """Max over kernel_size windows, as torch's (same argument order). (N, C, H, W) ->
    (N, C, H', W'); stride defaults to kernel_size; taps are ``dilation`` apart; with
    ``return_indices`` the layer returns (values, flat int64 indices) as torch does."""

    def __init__(self, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                 padding: IntOrPair = 0, dilation: IntOrPair = 1, return_indices: bool = False,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        op = "MaxPool2d"
        if isinstance(dilation, bool):
            raise TypeError(f"{op}: dilation={dilation}: torch's order is (kernel_size, stride, "
                            f"padding, dilation, return_indices, ceil_mode); pass "
                            f"ceil_mode={dilation} by keyword")
        _check_window(op, kernel_size, stride, padding)
        to_pair(dilation, "dilation", op)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}"
                + (f", dilation={self.dilation}" if self.dilation not in (1, (1, 1)) else "")
                + (", ceil_mode=True" if self.ceil_mode else ""))


class AvgPool2d(Module):
    """Mean over kernel_size windows. (N, C, H, W) -> (N, C, H', W'); ``divisor_override``
    divides each window sum by that number instead of the window size."""

    def __init__(self, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                 padding: IntOrPair = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        _check_window("AvgPool2d", kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

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
