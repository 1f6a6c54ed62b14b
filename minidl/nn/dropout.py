"""The dropout layer."""
from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor
from ..functional.validation import check_probability
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; identity in eval."""

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__()
        self.p, self.name = check_probability(p, "p", "Dropout"), name

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
