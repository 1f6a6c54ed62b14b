"""Keras's weight constraints: ``max_norm``, ``non_neg``, ``unit_norm``, ``min_max_norm``.

Each is a callable ``array -> array`` with Keras's formula and Keras's ``axis`` meaning: the
Keras layers apply it to the kernel **in Keras's layout** -- a Dense kernel (in, units), a
Conv2D kernel (kh, kw, in, filters) -- and copy the result back into their minidl weight
((units, in), (filters, in, kh, kw)). So ``max_norm(1.0)`` (``axis=0``) caps the norm of each
unit's incoming weights, as in Keras. (``minidl.optim.constraints`` works on minidl's layout,
for ``nn`` layers' ``weight_constraint=``.)

    >>> import numpy as np
    >>> w = np.array([[3.0, 0.3], [4.0, 0.4]])        # a Dense kernel (in=2, units=2)
    >>> np.linalg.norm(max_norm(1.0)(w), axis=0).round(4).tolist()
    [1.0, 0.5]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backend import get_array_module
from .config import epsilon

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "max_norm", "non_neg",
           "unit_norm", "min_max_norm", "get"]


class Constraint:
    """Base class: ``__call__(w) -> w`` on a backend array in Keras's layout."""

    def __call__(self, w: Any) -> Any:
        return w


def _norms(w: Any, axis: int | Sequence[int]) -> Any:
    xp = get_array_module(w)
    ax = axis if isinstance(axis, int) else tuple(axis)
    return xp.sqrt((w * w).sum(axis=ax, keepdims=True))


class MaxNorm(Constraint):
    """``w * clip(n, 0, max_value) / (epsilon + n)`` with ``n`` the norm along ``axis``."""

    def __init__(self, max_value: float = 2.0, axis: int | Sequence[int] = 0) -> None:
        if max_value <= 0:
            raise ValueError(f"max_norm: max_value must be positive, got {max_value}")
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w: Any) -> Any:
        n = _norms(w, self.axis)
        xp = get_array_module(w)
        return (w * (xp.clip(n, 0.0, self.max_value) / (epsilon() + n))).astype(w.dtype)

    def __repr__(self) -> str:
        return f"max_norm({self.max_value}, axis={self.axis})"


class NonNeg(Constraint):
    """``w * (w >= 0)``."""

    def __call__(self, w: Any) -> Any:
        return (w * (w >= 0)).astype(w.dtype)


class UnitNorm(Constraint):
    """``w / (epsilon + n)`` with ``n`` the norm along ``axis``."""

    def __init__(self, axis: int | Sequence[int] = 0) -> None:
        self.axis = axis

    def __call__(self, w: Any) -> Any:
        return (w / (epsilon() + _norms(w, self.axis))).astype(w.dtype)


class MinMaxNorm(Constraint):
    """Norms along ``axis`` pulled into [min_value, max_value] at ``rate`` (Keras's rule)."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int | Sequence[int] = 0) -> None:
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w: Any) -> Any:
        n = _norms(w, self.axis)
        xp = get_array_module(w)
        desired = self.rate * xp.clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return (w * (desired / (epsilon() + n))).astype(w.dtype)


def max_norm(max_value: float = 2.0, axis: int | Sequence[int] = 0) -> MaxNorm:
    """Keras's ``max_norm``: cap each unit's incoming weight norm at ``max_value``."""
    return MaxNorm(max_value, axis)


def non_neg() -> NonNeg:
    """Keras's ``non_neg``."""
    return NonNeg()


def unit_norm(axis: int | Sequence[int] = 0) -> UnitNorm:
    """Keras's ``unit_norm``."""
    return UnitNorm(axis)


def min_max_norm(min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int | Sequence[int] = 0) -> MinMaxNorm:
    """Keras's ``min_max_norm``."""
    return MinMaxNorm(min_value, max_value, rate, axis)


def get(identifier: Any) -> Any:
    """A constraint from None, a name ('max_norm', 'non_neg', 'unit_norm', 'min_max_norm')
    or a callable."""
    if identifier is None or callable(identifier):
        return identifier
    table = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
             "min_max_norm": MinMaxNorm}
    if isinstance(identifier, str) and identifier.lower() in table:
        return table[identifier.lower()]()
    raise ValueError(f"unknown constraint {identifier!r}; expected one of {sorted(table)} or "
                     f"a callable")
