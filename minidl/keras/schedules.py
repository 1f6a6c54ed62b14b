"""Keras's learning-rate schedules (``keras.optimizers.schedules``): functions of the step.

A schedule passed as ``learning_rate=`` is evaluated by the optimizer before every update at
the number of updates done so far (0 for the first), as Keras does:
``SGD(learning_rate=ExponentialDecay(0.01, decay_steps=1000, decay_rate=0.1))``.

    >>> ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(20)
    0.025
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay",
           "PiecewiseConstantDecay", "CosineDecay"]


class LearningRateSchedule:
    """Base class: ``schedule(step) -> learning rate``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent floored
    with ``staircase=True``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False) -> None:
        if decay_steps <= 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be positive, got {decay_steps}")
        self.initial, self.steps, self.rate, self.staircase = (
            float(initial_learning_rate), decay_steps, float(decay_rate), staircase)

    def __call__(self, step: int) -> float:
        p = step / self.steps
        return self.initial * self.rate ** (math.floor(p) if self.staircase else p)


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored with
    ``staircase=True``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False) -> None:
        if decay_steps <= 0:
            raise ValueError(f"InverseTimeDecay: decay_steps must be positive, got {decay_steps}")
        self.initial, self.steps, self.rate, self.staircase = (
            float(initial_learning_rate), decay_steps, float(decay_rate), staircase)

    def __call__(self, step: int) -> float:
        p = step / self.steps
        return self.initial / (1.0 + self.rate * (math.floor(p) if self.staircase else p))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` up to ``boundaries[0]`` (inclusive), ``values[1]`` up to
    ``boundaries[1]``, ..., ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]) -> None:
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay: needs one more value than boundaries, "
                             f"got {len(boundaries)} boundaries and {len(values)} values")
        self.boundaries, self.values = list(boundaries), [float(v) for v in values]

    def __call__(self, step: int) -> float:
        return self.values[bisect.bisect_left(self.boundaries, step)]


class CosineDecay(LearningRateSchedule):
    """``initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) /
    decay_steps)) + alpha)``."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_target: float | None = None, warmup_steps: int = 0) -> None:
        if warmup_target is not None or warmup_steps:
            raise ValueError("CosineDecay: warmup is not supported by minidl")
        if decay_steps <= 0:
            raise ValueError(f"CosineDecay: decay_steps must be positive, got {decay_steps}")
        self.initial, self.steps, self.alpha = float(initial_learning_rate), decay_steps, alpha

    def __call__(self, step: int) -> float:
        done = min(step, self.steps) / self.steps
        return self.initial * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * done))
                               + self.alpha)
