"""Tensor factories: zeros, ones, full, randn, rand, arange, zeros_like and ones_like.

Each makes a float32 tensor on the default device unless ``dtype`` / ``device`` say otherwise;
the random ones draw from minidl's generator, seeded by ``md.manual_seed``.

    >>> import minidl as md
    >>> md.zeros(2, 3).shape, md.ones((4,)).dtype, md.arange(3).tolist()
    ((2, 3), dtype('float32'), [0, 1, 2])
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd import Tensor
from .backend import get_array_module, get_default_device, random_normal, random_uniform, xp_for

__all__ = ["arange", "full", "ones", "ones_like", "rand", "randn", "zeros", "zeros_like"]


def _shape(shape: tuple) -> tuple[int, ...]:
    return tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else tuple(shape)


def _new(fill: Callable[[Any, tuple, Any], Any], shape: tuple, dtype: Any, device: str | None,
         requires_grad: bool) -> Tensor:
    device = device or get_default_device()
    xp = xp_for(device)
    data = fill(xp, _shape(shape), np.dtype(dtype or np.float32))
    return Tensor(data, requires_grad=requires_grad)


def zeros(*shape: Any, dtype: Any = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros, e.g. ``md.zeros(2, 3)`` (float32 on the default device)."""
    return _new(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape: Any, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _new(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad)


def full(shape: Sequence[int], value: float, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``value``."""
    return _new(lambda xp, s, d: xp.full(s, value, d), (tuple(shape),), dtype, device,
                requires_grad)


def randn(*shape: Any, dtype: Any = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples from minidl's generator (seed it with ``md.manual_seed``)."""
    return _new(random_normal, shape, dtype, device, requires_grad)


def rand(*shape: Any, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples from minidl's generator."""
    return _new(random_uniform, shape, dtype, device, requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None,
           device: str | None = None) -> Tensor:
    """Evenly spaced values in [start, stop), like ``numpy.arange`` (int64 for int arguments)."""
    xp = xp_for(device or get_default_device())
    if stop is None:
        start, stop = 0, start
    if dtype is None and all(isinstance(v, int) for v in (start, stop, step)):
        dtype = np.int64
    return Tensor(xp.arange(start, stop, step, dtype=np.dtype(dtype or np.float32)))


def zeros_like(x: Tensor, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape, dtype and device of ``x``."""
    return Tensor(get_array_module(x.data).zeros_like(x.data), requires_grad=requires_grad)


def ones_like(x: Tensor, requires_grad: bool = False) -> Tensor:
    """Ones with the shape, dtype and device of ``x``."""
    return Tensor(get_array_module(x.data).ones_like(x.data), requires_grad=requires_grad)
