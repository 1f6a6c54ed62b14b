"""Keras's weight initializers, by name or class: ``glorot_uniform``, ``he_normal``, ``zeros``...

An initializer is called with a shape **in Keras's layout** -- a Dense kernel (in, units), a
Conv2D kernel (kh, kw, in, filters) -- and returns a NumPy array; the layer copies it into its
minidl weight. Fans are Keras's: ``fan_in = in * kh * kw``, ``fan_out = filters * kh * kw``.
Draws come from minidl's generator (``md.manual_seed``), or from ``seed=`` when given.

    >>> import numpy as np
    >>> w = get("glorot_uniform")((30, 10))
    >>> bool(np.abs(w).max() <= np.sqrt(6 / (30 + 10)))
    True
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import rng

__all__ = ["Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
           "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform",
           "HeNormal", "LecunUniform", "LecunNormal", "get"]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's (fan_in, fan_out) of a kernel shape: the last axis is the output, the one
    before it the input, the others the receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: ``__call__(shape, dtype='float32') -> np.ndarray``."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def _gen(self) -> np.random.Generator:
        return rng() if self.seed is None else np.random.default_rng(self.seed)

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        return np.zeros(tuple(shape), dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        return np.ones(tuple(shape), dtype=dtype)


class Constant(Initializer):
    """Every element ``value``."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.value = float(value)

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        return np.full(tuple(shape), self.value, dtype=dtype)


class RandomNormal(Initializer):
    """N(mean, stddev**2); Keras's defaults mean=0, stddev=0.05."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        return self._gen().normal(self.mean, self.stddev, tuple(shape)).astype(dtype)


class RandomUniform(Initializer):
    """U(minval, maxval); Keras's defaults -0.05, 0.05."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        return self._gen().uniform(self.minval, self.maxval, tuple(shape)).astype(dtype)


def _truncated(gen: np.random.Generator, shape: tuple[int, ...], stddev: float) -> np.ndarray:
    """N(0, stddev**2) cut at two standard deviations: out-of-range draws are redrawn (all
    of them at once per round; each round keeps ~95%)."""
    out = gen.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = gen.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class TruncatedNormal(Initializer):
    """Normal(mean, stddev) cut at two standard deviations (Keras's defaults 0, 0.05)."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        return (self.mean + _truncated(self._gen(), tuple(shape), self.stddev)).astype(dtype)


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: variance ``scale / n`` with n = fan_in, fan_out or their
    mean ('fan_avg'); 'truncated_normal' (stddev divided by .8796..., the std of a unit normal
    cut at 2), 'untruncated_normal' or 'uniform' (limit ``sqrt(3 * scale / n)``)."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None) -> None:
        super().__init__(seed)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be 'fan_in', 'fan_out' or 'fan_avg', "
                             f"got {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"VarianceScaling: distribution must be 'truncated_normal', "
                             f"'untruncated_normal' or 'uniform', got {distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        shape = tuple(shape)
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, n)
        gen = self._gen()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return gen.uniform(-limit, limit, shape).astype(dtype)
        if self.distribution == "untruncated_normal":
            return gen.normal(0.0, math.sqrt(var), shape).astype(dtype)
        return _truncated(gen, shape, math.sqrt(var) / 0.87962566103423978).astype(dtype)


class GlorotUniform(VarianceScaling):
    """U(-limit, limit), ``limit = sqrt(6 / (fan_in + fan_out))`` (Keras's Dense/Conv default)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(VarianceScaling):
    """Truncated normal, stddev ``sqrt(2 / (fan_in + fan_out))``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeUniform(VarianceScaling):
    """U(-limit, limit), ``limit = sqrt(6 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "uniform", seed)


class HeNormal(VarianceScaling):
    """Truncated normal, stddev ``sqrt(2 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class LecunUniform(VarianceScaling):
    """U(-limit, limit), ``limit = sqrt(3 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_in", "uniform", seed)


class LecunNormal(VarianceScaling):
    """Truncated normal, stddev ``sqrt(1 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_in", "truncated_normal", seed)


_BY_NAME: dict[str, Callable[[], Initializer]] = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
}
# Keras accepts the class names as strings too ('GlorotUniform', 'HeNormal', ...).
_BY_NAME.update({cls.__name__.lower(): cls for cls in list(_BY_NAME.values())})


def get(identifier: str | Initializer | Callable | None) -> Callable[..., np.ndarray] | None:
    """An initializer from a name ('glorot_uniform', 'HeNormal', ...), an instance or a
    callable ``(shape, dtype) -> array``."""
    if identifier is None or callable(identifier):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise ValueError(f"unknown initializer {identifier!r}; expected one of "
                         f"{sorted(k for k in _BY_NAME if '_' in k or k in ('zeros', 'ones'))}")
    raise TypeError(f"initializer must be a name or a callable, got {type(identifier).__name__}")


# Keras's lower-case aliases (keras.initializers.glorot_uniform() etc.)
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal = HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
