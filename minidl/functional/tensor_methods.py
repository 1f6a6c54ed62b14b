"""Attach the operators (``+``, ``@``, ``x[i]``, ...) and methods (``.sum()``, ...) to Tensor."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor
from .elementwise import abs, add, astype, clip, div, exp, log, mul, neg, pow, sqrt, sub
from .inplace import install_inplace_methods
from .linalg import matmul
from .reduction import argmax, broadcast_to, max, mean, min, sum, var
from .shape import flatten, getitem, permute, reshape, squeeze, transpose, unsqueeze


def _compare(op: str) -> Any:
    def compare(a: Tensor, b: Any) -> Tensor:
        other = b.data if isinstance(b, Tensor) else b
        return Tensor(getattr(a.data, op)(other))
    compare.__name__ = op
    return compare


def install_tensor_methods() -> None:
    """Attach the operators and methods to :class:`~minidl.autograd.Tensor`.

    ``import minidl`` calls this once. The engine in ``minidl.autograd`` sits below the ops
    and works without them; the ops are built on it, so they are attached from up here.
    Calling it again changes nothing.
    """
    T = Tensor
    install_inplace_methods()  # x[i] = v, += -= *= /= @= and the _ methods
    T.__add__ = lambda a, b: add(a, b)
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = lambda a, b: sub(a, b)
    T.__rsub__ = lambda a, b: sub(b, a)
    T.__mul__ = lambda a, b: mul(a, b)
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = lambda a, b: div(a, b)
    T.__rtruediv__ = lambda a, b: div(b, a)
    T.__pow__ = lambda a, b: pow(a, b)
    T.__rpow__ = lambda a, b: pow(b, a)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__rmatmul__ = lambda a, b: matmul(b, a)
    T.__neg__ = neg
    T.__abs__ = abs
    T.__getitem__ = getitem
    for op in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
        setattr(T, op, _compare(op))
    T.__hash__ = object.__hash__
    T.sum = sum
    T.mean = mean
    T.var = var
    T.max = max
    T.min = min
    T.argmax = argmax
    T.exp = exp
    T.log = log
    T.sqrt = sqrt
    T.abs = abs
    T.clip = clip
    T.clamp = clip
    T.reshape = reshape
    T.view = reshape
    T.transpose = transpose
    T.permute = permute
    T.flatten = flatten
    T.squeeze = squeeze
    T.unsqueeze = unsqueeze
    T.broadcast_to = broadcast_to
    T.expand = lambda x, *shape: broadcast_to(x, shape[0] if len(shape) == 1 and
                                              not isinstance(shape[0], int) else shape)
    T.astype = astype
    T.float = lambda x: astype(x, np.float32)
    T.double = lambda x: astype(x, np.float64)
    T.long = lambda x: astype(x, np.int64)
    T.T = property(lambda x: transpose(x))
    T.matmul = matmul
