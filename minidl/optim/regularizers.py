"""Weight penalties (Keras' ``kernel_regularizer``), attached with ``weight_regularizer=``.

Each is a callable ``Tensor -> scalar Tensor``, collected by ``model.regularization_loss()``:

    layer = nn.Linear(10, 5, weight_regularizer=regularizers.l2(1e-4))
    loss = criterion(model(x), y) + model.regularization_loss()

As in Keras, ``l2(c)`` is ``c * sum(w**2)`` (no factor 1/2) and ``l1(c)`` is ``c * sum(|w|)``.
"""
from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2"]


class Regularizer:
    """``c1 * sum(|w|) + c2 * sum(w**2)``."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        if l1 < 0 or l2 < 0:
            raise ValueError(f"regularizer coefficients must be >= 0, got l1={l1}, l2={l2}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, w: Tensor) -> Tensor:
        total = None
        if self.l1:
            total = F.sum(F.abs(w)) * self.l1
        if self.l2:
            sq = F.sum(w * w) * self.l2
            total = sq if total is None else total + sq
        if total is None:
            return F.sum(w) * 0.0
        return total

    def __repr__(self) -> str:
        if self.l1 and not self.l2:
            return f"l1({self.l1})"
        if self.l2 and not self.l1:
            return f"l2({self.l2})"
        return f"l1_l2(l1={self.l1}, l2={self.l2})"


def l1(l1: float = 0.01) -> Regularizer:  # noqa: E741 - Keras' name
    """``l1 * sum(|w|)`` (encourages sparse weights)."""
    return Regularizer(l1=l1)


def l2(l2: float = 0.01) -> Regularizer:
    """``l2 * sum(w**2)`` (weight decay as a loss term)."""
    return Regularizer(l2=l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Regularizer:  # noqa: E741
    """``l1 * sum(|w|) + l2 * sum(w**2)`` (elastic net)."""
    return Regularizer(l1=l1, l2=l2)


L1, L2, L1L2 = l1, l2, l1_l2
