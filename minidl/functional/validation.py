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

import functools
import inspect
from typing import Any

import numpy as np

from ..autograd import Tensor

__all__ = ["IntOrPair", "KEYWORD_HINTS", "Pair", "check_floating", "check_groups",
           "check_layer_input", "check_ndim", "check_probability", "conv_padding", "keywords",
           "positive_int", "resolve_dim", "resolve_keepdim", "to_pair", "unknown_keyword"]

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


# ---- torch's keywords beside NumPy's --------------------------------------------------------

def resolve_dim(op: str, dim: Any, axis: Any) -> Any:
    """torch's ``dim=`` or NumPy's ``axis=`` (the same thing); both at once is an error."""
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError(f"{op}: got both dim={dim!r} and axis={axis!r}; pass one (dim= is "
                        "torch's name, axis= NumPy's)")
    return axis


def resolve_keepdim(op: str, keepdim: bool, keepdims: bool | None) -> bool:
    """torch's ``keepdim=`` or NumPy's ``keepdims=``; both at once (differing) is an error."""
    if keepdims is None:
        return bool(keepdim)
    if keepdim and not keepdims:
        raise TypeError(f"{op}: got both keepdim=True and keepdims=False; pass one")
    return bool(keepdims)


# Keywords users bring from torch, NumPy or Keras that minidl spells otherwise, and what to
# write instead; unknown_keyword() names the replacement in its one-line error.
KEYWORD_HINTS: dict[str, str] = {
    "axes": "dim= (torch) or axis= (NumPy)",
    "dims": "dim= (torch) or axis= (NumPy)",
    "keep_dims": "keepdim= (torch) or keepdims= (NumPy)",
    "out": "the return value (minidl ops return a new tensor; there is no out=)",
    "input": "a positional first argument",
    "inplace": "the in-place method (x.relu_() style) or plain assignment",
    "memory_format": "nothing (minidl keeps each array's memory layout itself)",
    "pin_memory": "nothing (minidl has no pinned host memory)",
    "layout": "nothing (minidl tensors are always strided)",
    "generator": "md.manual_seed(seed) (minidl has one seeded generator)",
}


def unknown_keyword(op: str, given: Any, accepted: Any) -> TypeError:
    """The one-line TypeError for keywords of ``given`` that ``op`` does not take."""
    bad = sorted(k for k in given if k not in accepted)
    hints = [f"{k}= -> use {KEYWORD_HINTS[k]}" for k in bad if k in KEYWORD_HINTS]
    others = [k for k in bad if k not in KEYWORD_HINTS]
    parts = hints + ([f"unknown keyword {', '.join(k + '=' for k in others)}; {op} takes "
                      f"{', '.join(k + '=' for k in accepted)}"] if others else [])
    return TypeError(f"{op}: " + "; ".join(parts))


def keywords(fn: Any) -> Any:
    """Decorator: a keyword ``fn`` does not take raises :func:`unknown_keyword`'s error
    (naming what to write instead) rather than Python's bare "unexpected keyword argument".

        >>> from minidl.functional.validation import keywords
        >>> @keywords
        ... def total(x, dim=None):
        ...     return x
        >>> total(1, axes=0)
        Traceback (most recent call last):
        ...
        TypeError: total: axes= -> use dim= (torch) or axis= (NumPy)
    """
    params = inspect.signature(fn).parameters
    accepted = tuple(n for n, p in params.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    names = frozenset(accepted)
    op = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs and not names.issuperset(kwargs):
            raise unknown_keyword(op, kwargs, accepted)
        return fn(*args, **kwargs)
    return wrapper


_CAST = {"float32": "float", "float64": "double", "float16": "half"}


def check_layer_input(x: Any, param: Any, layer: str) -> None:
    """A layer's input is a Tensor of its parameters' dtype, as torch requires: a float64 or
    integer input to a float32 layer raises (instead of silently computing in float64) with
    the fix in the message. ``param`` is a parameter or buffer of the layer (None: no check)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer}: expected a Tensor input, got {type(x).__name__}; wrap the "
                        "data with md.tensor(...)")
    if param is None or x.dtype == param.dtype:
        return
    want = np.dtype(param.dtype)
    fix = f"cast the input with x.{_CAST.get(want.name, 'to')}()"
    if np.dtype(x.dtype).name in _CAST:
        fix += f" or the model with model.{_CAST[np.dtype(x.dtype).name]}()"
    raise TypeError(f"{layer}: input dtype {x.dtype} does not match the layer's {want} "
                    f"parameters; {fix}")
