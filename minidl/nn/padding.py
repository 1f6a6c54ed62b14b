"""Padding layers, as torch.nn's: ZeroPad2d, ConstantPad2d, ReflectionPad2d,
ReplicationPad2d and CircularPad2d, all built on :func:`minidl.functional.pad`."""
from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor
from .module import Module

__all__ = ["CircularPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d",
           "ZeroPad2d"]


class _Pad2d(Module):
    """Pads the last two dims of (N, C, H, W) or (C, H, W) by ``padding``: an int for all
    four sides or ``(left, right, top, bottom)``; negative values crop."""

    mode = "constant"

    def __init__(self, padding: int | tuple[int, int, int, int], value: float = 0.0) -> None:
        super().__init__()
        if isinstance(padding, int):
            padding = (padding,) * 4
        padding = tuple(padding)
        if len(padding) != 4 or not all(isinstance(p, int) for p in padding):
            raise ValueError(f"{type(self).__name__}: padding must be an int or 4 ints "
                             f"(left, right, top, bottom), got {padding}")
        self.padding, self.value = padding, value

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "constant":
            return F.pad(x, self.padding, value=self.value)
        return F.pad(x, self.padding, mode=self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(_Pad2d):
    """Pad H and W with zeros."""

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)


class ConstantPad2d(_Pad2d):
    """Pad H and W with ``value``."""

    def __init__(self, padding: int | tuple[int, int, int, int], value: float) -> None:
        super().__init__(padding, value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ReflectionPad2d(_Pad2d):
    """Pad H and W with their mirror image (the edge not repeated)."""

    mode = "reflect"

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)


class ReplicationPad2d(_Pad2d):
    """Pad H and W by repeating the edge pixels."""

    mode = "replicate"

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)


class CircularPad2d(_Pad2d):
    """Pad H and W by wrapping around (periodic boundary)."""

    mode = "circular"

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding)
