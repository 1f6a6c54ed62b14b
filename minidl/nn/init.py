"""Weight initialisers, in place on a Tensor's data (``torch.nn.init`` names and formulas).

Fans follow torch: for a weight of shape (out, in, *kernel), ``fan_in = in * prod(kernel)``
and ``fan_out = out * prod(kernel)``; a Linear weight (out, in) has no kernel dims.
Keras spellings are aliases: ``glorot_uniform_`` = ``xavier_uniform_``,
``he_normal_`` = ``kaiming_normal_(nonlinearity='relu')``, ...

Random numbers come from minidl's generator (``md.manual_seed``), on the tensor's device.
Within ``with skip_init():`` the random fillers draw nothing and leave the tensors as the
layers allocated them (zeros): shapes only, for counting parameters and MACs of big nets.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from ..autograd import Tensor
from ..backend import get_array_module, random_normal, random_uniform

__all__ = ["skip_init", "calculate_gain", "calculate_fan_in_and_fan_out", "zeros_", "ones_",
           "constant_",
           "normal_", "uniform_", "xavier_uniform_", "xavier_normal_", "glorot_uniform_",
           "glorot_normal_", "kaiming_uniform_", "kaiming_normal_", "he_uniform_", "he_normal_",
           "lecun_normal_", "lecun_uniform_", "trunc_normal_"]


# Per thread (and per asyncio task): building a model for its shapes in one thread does not
# leave another thread's model uninitialised.
_skipping: ContextVar[bool] = ContextVar("minidl_skip_init", default=False)


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build layers without drawing random weights: ``uniform_``, ``normal_`` and
    ``trunc_normal_`` (and every initialiser built on them) leave the tensor as it is and
    take nothing from the generator. VGG-16's 138 M weights then cost no time at all.

        >>> import minidl as md
        >>> from minidl import nn
        >>> with skip_init():
        ...     layer = nn.Linear(1000, 1000)
        >>> float(abs(layer.weight.numpy()).max())
        0.0
    """
    token = _skipping.set(True)
    try:
        yield
    finally:
        _skipping.reset(token)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (torch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid", "identity")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if tensor.ndim < 2:
        raise ValueError(f"init: fan in and fan out need a tensor with at least 2 dims, got "
                         f"shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:]) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor: Tensor, values: Any) -> Tensor:
    # Rebinding .data (rather than writing into it) keeps any array shared elsewhere intact.
    tensor.data = values.astype(tensor.dtype, copy=False)
    return tensor


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    xp = get_array_module(tensor.data)
    return _fill(tensor, xp.full(tensor.shape, val, dtype=tensor.dtype))


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples of U(a, b)."""
    if _skipping.get():
        return tensor
    xp = get_array_module(tensor.data)
    u = random_uniform(xp, tensor.shape, tensor.dtype)
    return _fill(tensor, u * (b - a) + a)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples of N(mean, std^2)."""
    if _skipping.get():
        return tensor
    xp = get_array_module(tensor.data)
    z = random_normal(xp, tensor.shape, tensor.dtype)
    return _fill(tensor, z * std + mean)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> Tensor:
    """N(mean, std^2) restricted to [a, b] (resampling the values that fall outside)."""
    if _skipping.get():
        return tensor
    xp = get_array_module(tensor.data)
    z = random_normal(xp, tensor.shape, tensor.dtype) * std + mean
    bad = (z < a) | (z > b)
    while bool(bad.any()):
        fresh = random_normal(xp, tensor.shape, tensor.dtype) * std + mean
        z = xp.where(bad, fresh, z)
        bad = (z < a) | (z > b)
    return _fill(tensor, z)


def _empty_tensor(tensor: Tensor, name: str) -> bool:
    """True (with torch's warning) for a tensor with no elements: its fans may be 0, and
    there is nothing to fill (``Linear(0, 3)`` has a (3, 0) weight)."""
    if tensor.size:
        return False
    warnings.warn(f"init.{name}: initializing a zero-element tensor of shape "
                  f"{tuple(tensor.shape)} is a no-op", UserWarning, stacklevel=3)
    return True


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot & Bengio (2010): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    if _empty_tensor(tensor, "xavier_uniform_"):
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    if _empty_tensor(tensor, "xavier_normal_"):
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """He et al. (2015): U(-b, b), b = gain * sqrt(3 / fan). ``a`` is the leaky slope."""
    if _empty_tensor(tensor, "kaiming_uniform_"):
        return tensor
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std^2), std = gain / sqrt(fan)."""
    if _empty_tensor(tensor, "kaiming_normal_"):
        return tensor
    gain = calculate_gain(nonlinearity, a)
    return normal_(tensor, 0.0, gain / math.sqrt(_fan(tensor, mode)))


def he_uniform_(tensor: Tensor) -> Tensor:
    """Keras' he_uniform: U(-b, b), b = sqrt(6 / fan_in)."""
    return kaiming_uniform_(tensor, nonlinearity="relu")


def he_normal_(tensor: Tensor) -> Tensor:
    """He normal: N(0, 2 / fan_in) (Keras truncates; this is torch's untruncated form)."""
    return kaiming_normal_(tensor, nonlinearity="relu")


def lecun_normal_(tensor: Tensor) -> Tensor:
    """LeCun normal (for SELU): N(0, 1 / fan_in)."""
    if _empty_tensor(tensor, "lecun_normal_"):
        return tensor
    return normal_(tensor, 0.0, 1.0 / math.sqrt(_fan(tensor, "fan_in")))


def lecun_uniform_(tensor: Tensor) -> Tensor:
    """LeCun uniform: U(-b, b), b = sqrt(3 / fan_in)."""
    if _empty_tensor(tensor, "lecun_uniform_"):
        return tensor
    bound = math.sqrt(3.0 / _fan(tensor, "fan_in"))
    return uniform_(tensor, -bound, bound)


glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
