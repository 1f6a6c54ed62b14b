"""Reshaping layers: ``Flatten`` and ``Reshape``."""
from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor
from .module import Module

__all__ = ["Flatten", "Reshape"]


class Flatten(Module):
    """Merge dims start_dim..end_dim: (N, C, H, W) -> (N, C*H*W) by default, as torch.

    Dims out of range for the input (``Flatten(start_dim=5)`` on a 4-D input) raise, naming
    the layer and the shape.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(d, bool) or not isinstance(d, int):
                raise TypeError(f"Flatten: {name} must be an int, got {d!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        try:
            return F.flatten(x, self.start_dim, self.end_dim)
        except ValueError as e:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}): "
                             f"{str(e).removeprefix('flatten: ')}") from None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Reshape(Module):
    """Reshape each sample: (N, ...) -> (N, *shape) (Keras' Reshape; -1 allowed)."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.reshape(x, (x.shape[0], *self.shape))

    def extra_repr(self) -> str:
        return f"{self.shape}"
