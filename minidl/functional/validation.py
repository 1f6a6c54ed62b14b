"""Argument validators shared by functional and nn: each checks one argument of an op or layer,
returns it normalised, or raises naming the op or layer and the value it got.

    >>> from minidl.functional.validation import to_pair
    >>> to_pair(3, "kernel_size", "conv2d")
    (3, 3)
    >>> to_pair((0, 1), "stride", "conv2d")
    Traceback (most recent call last):
    ...
    ValueError: conv2d: stride must be a positive int or pair, got (0, 1)
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IntOrPair", "Pair", "check_floating", "check_groups", "check_ndim",
           "check_probability", "conv_padding", "positive_int", "to_pair"]

Pair = tuple[int, int]
IntOrPair = int | tuple[int, int]


def _is_int(v: Any) -> bool:
    """A Python or NumPy integer, but not a bool (``stride=True`` is a mistake, not 1)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _kind(allow_zero: bool) -> str:
    return "a non-negative int" if allow_zero else "a positive int"


def positive_int(value: Any, what: str, op: str, allow_zero: bool = False) -> int:
    """``value`` as an int, checked to be > 0 (>= 0 with ``allow_zero``)."""
    if not _is_int(value) or value < (0 if allow_zero else 1):
        raise ValueError(f"{op}: {what} must be {_kind(allow_zero)}, got {value!r}")
    return int(value)


def to_pair(value: Any, what: str, op: str, allow_zero: bool = False) -> Pair:
    """An int or a pair of ints as a pair, each > 0 (>= 0 with ``allow_zero``).

    Sizes, strides and dilations are positive; paddings may be zero.
    """
    items = (value, value) if _is_int(value) else value
    try:
        a, b = items
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {what} must be {_kind(allow_zero)} or pair, "
                         f"got {value!r}") from None
    if not (_is_int(a) and _is_int(b)):
        raise ValueError(f"{op}: {what} must be {_kind(allow_zero)} or pair, got {value!r}")
    a, b = int(a), int(b)
    if min(a, b) < (0 if allow_zero else 1):
        raise ValueError(f"{op}: {what} must be {_kind(allow_zero)} or pair, got {(a, b)}")
    return a, b


def conv_padding(padding: Any, stride: Pair, op: str) -> str | Pair:
    """A convolution's padding: 'same', 'valid', or a non-negative int or pair (as a pair).

    'same' keeps the spatial size, so it needs stride 1 (as in torch).
    """
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', "
                             f"got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
        return padding
    return to_pair(padding, "padding", op, allow_zero=True)


def check_groups(groups: Any, in_channels: int, out_channels: int, op: str,
                 names: tuple[str, str] = ("in_channels", "out_channels"),
                 context: str = "") -> int:
    """``groups`` as an int: positive, dividing both channel counts.

    ``names`` are what the op calls its channel counts; ``context`` (e.g. the shapes) is
    appended to the message.
    """
    groups = positive_int(groups, "groups", op)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{op}: {names[0]} ({in_channels}) and {names[1]} ({out_channels}) "
                         f"must be divisible by groups ({groups}){context}")
    return groups


def check_probability(p: Any, what: str, op: str) -> float:
    """``p`` as a float in [0, 1]."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.number)) \
            or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: {what} must be in [0, 1], got {p!r}")
    return float(p)


def check_ndim(x: Any, ndim: int, what: str, op: str, layout: str) -> None:
    """``x`` (a Tensor or an array) has ``ndim`` dims, laid out as ``layout``."""
    if len(x.shape) != ndim:
        raise ValueError(f"{op}: expected a {ndim}-D {what} {layout}, got shape "
                         f"{tuple(x.shape)}")


def check_floating(x: Any, what: str, op: str) -> None:
    """``x`` (a Tensor or an array) has a floating-point dtype."""
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{op}: {what} must be a floating-point tensor, got dtype {x.dtype} "
                        f"(shape {tuple(x.shape)}); cast it with .float()")
