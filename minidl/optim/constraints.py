"""Weight constraints (Keras' ``kernel_constraint``), attached with ``weight_constraint=``.

A constraint is a callable ``array -> array`` that every minidl optimiser applies to the
parameter right after its update.

Axes: minidl weights put the output units first -- Linear (out, in), Conv2d
(out, in, kh, kw) -- so a unit's incoming weights are everything but axis 0. ``max_norm``
therefore takes the norm over all axes except 0 by default, which is the same vector Keras
uses (``axis=0`` of a Dense kernel (in, out), ``axis=[0, 1, 2]`` of a conv kernel
(kh, kw, in, out)). Pass ``axis=`` to choose other axes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backend import get_array_module

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "max_norm", "non_neg", "unit_norm"]


def _axes(w: Any, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(1, w.ndim)) if w.ndim > 1 else (0,)
    return (axis,) if isinstance(axis, int) else tuple(axis)


class Constraint:
    """Base class: ``__call__(array) -> array``."""

    def __call__(self, w: Any) -> Any:
        raise NotImplementedError


class MaxNorm(Constraint):
    """Rescale each unit's incoming weight vector to norm ``max_value`` when it is larger:
    ``w <- w * r / ||w||`` where ``||w|| > r`` (norm over ``axis``; default all but 0)."""

    def __init__(self, max_value: float = 2.0, axis: int | Sequence[int] | None = None) -> None:
        if max_value <= 0:
            raise ValueError(f"max_norm: max_value must be positive, got {max_value}")
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w: Any) -> Any:
        xp = get_array_module(w)
        norms = xp.sqrt((w * w).sum(axis=_axes(w, self.axis), keepdims=True))
        scale = xp.where(norms > self.max_value, self.max_value / xp.maximum(norms, 1e-12), 1.0)
        return (w * scale).astype(w.dtype, copy=False)

    def __repr__(self) -> str:
        return f"max_norm({self.max_value})"


class NonNeg(Constraint):
    """Clamp weights at zero from below."""

    def __call__(self, w: Any) -> Any:
        return get_array_module(w).maximum(w, 0).astype(w.dtype, copy=False)

    def __repr__(self) -> str:
        return "non_neg()"


class UnitNorm(Constraint):
    """Scale each unit's incoming weights to norm 1 (axes as in max_norm)."""

    def __init__(self, axis: int | Sequence[int] | None = None) -> None:
        self.axis = axis

    def __call__(self, w: Any) -> Any:
        xp = get_array_module(w)
        norms = xp.sqrt((w * w).sum(axis=_axes(w, self.axis), keepdims=True))
        return (w / xp.maximum(norms, 1e-12)).astype(w.dtype, copy=False)

    def __repr__(self) -> str:
        return "unit_norm()"


def max_norm(max_value: float = 2.0, axis: int | Sequence[int] | None = None) -> MaxNorm:
    """Keras' ``max_norm``: cap each unit's incoming weight norm at ``max_value``."""
    return MaxNorm(max_value, axis)


def non_neg() -> NonNeg:
    """Keep weights >= 0."""
    return NonNeg()


def unit_norm(axis: int | Sequence[int] | None = None) -> UnitNorm:
    """Keep each unit's incoming weight norm at 1."""
    return UnitNorm(axis)
