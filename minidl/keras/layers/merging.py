"""Keras's merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, and
their functions (``add([a, b])``, ``concatenate([a, b])``, ...)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ... import functional as F
from ...autograd import Tensor
from .base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
           "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"]


class _Merge(Layer):
    """Combines a list of same-shaped inputs: ``Add()([a, b])``."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(f"{type(self).__name__} {self.name!r}: expected a list of at "
                             f"least 2 inputs, got {type(inputs).__name__}")
        xs = list(inputs)
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1 and not isinstance(self, Concatenate):
            raise ValueError(f"{type(self).__name__} {self.name!r}: inputs must have the same "
                             f"shape, got {[tuple(x.shape) for x in xs]}")
        return self._merge(xs)


def _fold(fn: Callable[[Tensor, Tensor], Tensor], xs: list[Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


class Add(_Merge):
    """Elementwise sum of the inputs."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        return _fold(lambda a, b: a + b, xs)


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        if len(xs) != 2:
            raise ValueError(f"Subtract {self.name!r}: expected exactly 2 inputs, got {len(xs)}")
        return xs[0] - xs[1]


class Multiply(_Merge):
    """Elementwise product of the inputs."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        return _fold(lambda a, b: a * b, xs)


class Average(_Merge):
    """Elementwise mean of the inputs."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        return _fold(lambda a, b: a + b, xs) / float(len(xs))


class Maximum(_Merge):
    """Elementwise maximum of the inputs."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        return _fold(F.maximum, xs)


class Minimum(_Merge):
    """Elementwise minimum of the inputs."""

    def _merge(self, xs: list[Tensor]) -> Tensor:
        return _fold(F.minimum, xs)


class Concatenate(_Merge):
    """Join the inputs along ``axis`` (Keras's default -1: the features, or the channels of
    channels-last images); the other dimensions must agree."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def _merge(self, xs: list[Tensor]) -> Tensor:
        nd = xs[0].ndim
        ax = self.axis % nd
        rest = {tuple(s for i, s in enumerate(x.shape) if i != ax) for x in xs}
        if len(rest) > 1 or any(x.ndim != nd for x in xs):
            raise ValueError(f"Concatenate {self.name!r}: inputs must match except along axis "
                             f"{self.axis}, got {[tuple(x.shape) for x in xs]}")
        return F.cat(xs, axis=ax)


def add(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: Sequence[Any], axis: int = -1, **kwargs: Any) -> Any:
    """``Concatenate(axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
