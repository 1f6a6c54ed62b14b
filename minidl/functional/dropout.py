"""Inverted dropout: zero each unit with probability p and scale the survivors by 1/(1-p),
so the expected activation is unchanged and evaluation needs no rescaling."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module, random_uniform


class Dropout(Function):
    def __init__(self, p: float) -> None:
        self.p = p

    def forward(self, x):
        xp = get_array_module(x)
        keep = random_uniform(xp, x.shape, x.dtype) >= self.p
        self.scale = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.scale

    def backward(self, gy):
        return gy * Tensor(self.scale)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero elements with probability ``p`` in training, scaling the rest by 1/(1-p).

    x: any shape -> same shape. Identity when ``training`` is False or ``p`` is 0.
    ``inplace`` (torch's option) is accepted and computed out of place: the same values.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout(p)(x)
