"""Keras's activations by name: ``relu``, ``sigmoid``, ``tanh``, ``softmax``, ``elu``, ``selu``,
``leaky_relu``, ``softplus``, ``softsign``, ``swish``/``silu``, ``relu6``, ``hard_sigmoid``,
``exponential``, ``linear``, with Keras's defaults (``leaky_relu``'s slope is 0.2).

Each is a function of a Tensor; :func:`get` turns a name, a function or None into one.

    >>> import minidl as md
    >>> [round(float(v), 4) for v in selu(md.tensor([0.0, 1.0])).numpy()]
    [0.0, 1.0507]
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor

__all__ = ["relu", "sigmoid", "tanh", "softmax", "elu", "selu", "leaky_relu", "softplus",
           "softsign", "swish", "silu", "relu6", "hard_sigmoid", "exponential", "linear", "get"]

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def relu(x: Tensor, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> Tensor:
    """Keras's relu: ``x`` above ``threshold`` (capped at ``max_value``), else
    ``negative_slope * (x - threshold)``."""
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return F.relu(x)
    y = F.where(x > threshold, x, (x - threshold) * negative_slope)
    return y if max_value is None else F.minimum(y, max_value)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return F.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    """tanh(x)."""
    return F.tanh(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``."""
    return F.softmax(x, axis=axis)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return F.elu(x, alpha)


def selu(x: Tensor) -> Tensor:
    """scale * elu(x, alpha) with Klambauer et al.'s scale 1.0507... and alpha 1.6733...."""
    return F.elu(x, _SELU_ALPHA) * _SELU_SCALE


def leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """x if x > 0 else negative_slope * x (Keras's default slope 0.2)."""
    return F.leaky_relu(x, negative_slope)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed as max(x, 0) + log(1 + exp(-|x|)) so it never overflows."""
    return F.relu(x) + F.log(F.exp(-F.abs(x)) + 1.0)


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return x / (F.abs(x) + 1.0)


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x) (also called silu)."""
    return x * F.sigmoid(x)


silu = swish


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6)."""
    return F.minimum(F.relu(x), 6.0)


def hard_sigmoid(x: Tensor) -> Tensor:
    """Keras 3's hard sigmoid: relu6(x + 3) / 6."""
    return relu6(x + 3.0) / 6.0


def exponential(x: Tensor) -> Tensor:
    """exp(x)."""
    return F.exp(x)


def linear(x: Tensor) -> Tensor:
    """The identity ('linear' activation, what ``activation=None`` means)."""
    return x


_BY_NAME: dict[str, Callable[[Tensor], Tensor]] = {
    f.__name__: f for f in (relu, sigmoid, tanh, softmax, elu, selu, leaky_relu, softplus,
                            softsign, swish, relu6, hard_sigmoid, exponential, linear)}
_BY_NAME["silu"] = swish


def get(identifier: str | Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    """The activation function for a name, a callable (returned as is) or None ('linear')."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        try:
            return _BY_NAME[identifier.lower()]
        except KeyError:
            raise ValueError(f"unknown activation {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)} or a function of a Tensor") from None
    if callable(identifier):
        return identifier
    raise TypeError(f"activation must be a name or a callable, got {type(identifier).__name__}")


def name_of(fn: Any) -> str:
    """The Keras name of an activation function (for reprs and summaries)."""
    return getattr(fn, "__name__", type(fn).__name__)
