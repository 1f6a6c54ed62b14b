"""Tensor factories (zeros, ones, full, empty, rand, randn, randint, randperm, arange, linspace,
eye, the ``*_like`` ones, from_numpy, as_tensor) and the dtype names (``md.float32``, ...).

Each takes torch's ``dtype=``, ``device=`` and ``requires_grad=``; floating factories make
float32 on the default device unless told otherwise. The random ones draw from minidl's
generator, seeded by ``md.manual_seed``, so the same seed gives the same numbers.

    >>> import minidl as md
    >>> md.zeros(2, 3).shape, md.ones((4,)).dtype, md.arange(3).tolist()
    ((2, 3), dtype('float32'), [0, 1, 2])
    >>> md.linspace(0, 1, 5).tolist(), md.eye(2, dtype=md.int64).tolist()
    ([0.0, 0.25, 0.5, 0.75, 1.0], [[1, 0], [0, 1]])
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd import Tensor, tensor
from .backend import (
    device_of,
    get_array_module,
    get_default_device,
    random_normal,
    random_uniform,
    rng,
    to_device,
    xp_for,
)

__all__ = ["arange", "as_tensor", "bool_", "empty", "empty_like", "eye", "float16", "float32",
           "float64", "from_numpy", "full", "full_like", "int8", "int16", "int32", "int64",
           "linspace", "ones", "ones_like", "rand", "rand_like", "randint", "randint_like",
           "randn", "randn_like", "randperm", "uint8", "zeros", "zeros_like"]

# The dtype names, as NumPy dtypes: usable wherever a dtype is taken (``dtype=md.float64``,
# ``x.to(md.int64)``) and equal to ``x.dtype`` (``x.dtype == md.float32``). minidl/__init__
# adds torch's aliases (md.float, md.double, md.half, md.long, md.int, md.bool).
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int8 = np.dtype(np.int8)
int16 = np.dtype(np.int16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)


def _shape(shape: tuple) -> tuple[int, ...]:
    """``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` all mean the shape (2, 3)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"expected a shape of non-negative ints, got {shape!r}")
    return tuple(int(n) for n in shape)


def _dtype(dtype: Any, default: Any = float32) -> np.dtype:
    return np.dtype(default if dtype is None else dtype)


def _new(fill: Callable[[Any, tuple, Any], Any], shape: tuple, dtype: Any, device: str | None,
         requires_grad: bool, default: Any = float32) -> Tensor:
    xp = xp_for(device or get_default_device())
    data = fill(xp, _shape(shape), _dtype(dtype, default))
    return Tensor(data, requires_grad=requires_grad)


def zeros(*size: Any, dtype: Any = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros, e.g. ``md.zeros(2, 3)`` (float32 on the default device)."""
    return _new(lambda xp, s, d: xp.zeros(s, d), size, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _new(lambda xp, s, d: xp.ones(s, d), size, dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor (its values are whatever the memory held)."""
    return _new(lambda xp, s, d: xp.empty(s, d), size, dtype, device, requires_grad)


def _fill_dtype(fill_value: Any, dtype: Any) -> Any:
    """torch's rule: without ``dtype``, a bool fill gives bool, an int fill int64, else float32."""
    if dtype is not None:
        return dtype
    if isinstance(fill_value, (bool, np.bool_)):
        return bool_
    return int64 if isinstance(fill_value, (int, np.integer)) else float32


def full(size: Sequence[int], fill_value: float, *, dtype: Any = None,
         device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value``; its dtype follows the value as in torch (int ->
    int64, bool -> bool, float -> float32) unless ``dtype`` is given."""
    dtype = _fill_dtype(fill_value, dtype)
    return _new(lambda xp, s, d: xp.full(s, fill_value, d), (size,), dtype, device,
                requires_grad)


def randn(*size: Any, dtype: Any = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples from minidl's generator (seed it with ``md.manual_seed``)."""
    return _new(random_normal, size, dtype, device, requires_grad)


def rand(*size: Any, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples from minidl's generator."""
    return _new(random_uniform, size, dtype, device, requires_grad)


def _integers(xp: Any, low: int, high: int, shape: tuple[int, ...], dtype: Any) -> Any:
    if xp is np:
        return rng(np).integers(low, high, size=shape, dtype=np.int64).astype(dtype, copy=False)
    return xp.random.randint(low, high, size=shape, dtype=np.int64).astype(dtype, copy=False)


def randint(low: int, high: int | None = None, size: Sequence[int] | None = None, *,
            dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Uniform integers in [low, high) of shape ``size``, as ``torch.randint``: call it as
    ``randint(high, size)`` or ``randint(low, high, size)``; int64 unless ``dtype`` says."""
    if size is None:  # randint(high, size)
        if high is None:
            raise TypeError("randint: missing size, e.g. md.randint(0, 10, (3,))")
        low, high, size = 0, low, high
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    return _new(lambda xp, s, d: _integers(xp, low, high, s, d), (size,), dtype, device,
                requires_grad, default=int64)


def randperm(n: int, *, dtype: Any = None, device: str | None = None,
             requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (int64) from minidl's generator."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")

    def fill(xp: Any, s: tuple, d: Any) -> Any:
        perm = rng(np).permutation(int(n)) if xp is np else xp.random.permutation(int(n))
        return perm.astype(d, copy=False)
    return _new(fill, (int(n),), dtype, device, requires_grad, default=int64)


def arange(start: float, end: float | None = None, step: float = 1, *, dtype: Any = None,
           device: str | None = None, requires_grad: bool = False,
           stop: float | None = None) -> Tensor:
    """Evenly spaced values in [start, end), as ``torch.arange`` (``stop=`` is NumPy's name for
    ``end``); int64 when every argument is an int, float32 otherwise."""
    if stop is not None:
        if end is not None:
            raise TypeError("arange: pass end= (torch) or stop= (NumPy), not both")
        end = stop
    if end is None:
        start, end = 0, start
    if dtype is None and all(isinstance(v, (int, np.integer)) for v in (start, end, step)):
        dtype = int64
    xp = xp_for(device or get_default_device())
    return Tensor(xp.arange(start, end, step, dtype=_dtype(dtype)), requires_grad=requires_grad)


def linspace(start: float, end: float, steps: int, *, dtype: Any = None,
             device: str | None = None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (float32)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    xp = xp_for(device or get_default_device())
    # computed in float64 and then cast, so float32 endpoints are exact
    return Tensor(xp.linspace(start, end, int(steps)).astype(_dtype(dtype)),
                  requires_grad=requires_grad)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: str | None = None,
        requires_grad: bool = False) -> Tensor:
    """The (n, m) identity matrix (m = n by default)."""
    return _new(lambda xp, s, d: xp.eye(s[0], s[1], dtype=d), (n, n if m is None else m),
                dtype, device, requires_grad)


def _like(x: Tensor, fill: Callable[[Any, tuple, Any], Any], dtype: Any, device: str | None,
          requires_grad: bool) -> Tensor:
    return _new(fill, x.shape, x.dtype if dtype is None else dtype, device or x.device,
                requires_grad)


def zeros_like(x: Tensor, *, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    """Zeros with the shape, dtype and device of ``x`` (unless ``dtype`` / ``device`` say)."""
    return _like(x, lambda xp, s, d: xp.zeros(s, d), dtype, device, requires_grad)


def ones_like(x: Tensor, *, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    """Ones with the shape, dtype and device of ``x``."""
    return _like(x, lambda xp, s, d: xp.ones(s, d), dtype, device, requires_grad)


def empty_like(x: Tensor, *, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor with the shape, dtype and device of ``x``."""
    return _like(x, lambda xp, s, d: xp.empty(s, d), dtype, device, requires_grad)


def full_like(x: Tensor, fill_value: float, *, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, with the shape, dtype and device of ``x``."""
    return _like(x, lambda xp, s, d: xp.full(s, fill_value, d), dtype, device, requires_grad)


def _float_like(x: Tensor, dtype: Any, op: str) -> Any:
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating dtype, got {dtype} (pass dtype=md.float32)")
    return dtype


def rand_like(x: Tensor, *, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples with the shape, dtype and device of ``x``."""
    return _like(x, random_uniform, _float_like(x, dtype, "rand_like"), device, requires_grad)


def randn_like(x: Tensor, *, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    """Standard normal samples with the shape, dtype and device of ``x``."""
    return _like(x, random_normal, _float_like(x, dtype, "randn_like"), device, requires_grad)


def randint_like(x: Tensor, low: int, high: int | None = None, *, dtype: Any = None,
                 device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Uniform integers in [low, high) (or [0, low)) with the shape of ``x``."""
    if high is None:
        low, high = 0, low
    return randint(low, high, x.shape, dtype=x.dtype if dtype is None else dtype,
                   device=device or x.device, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor that shares ``array``'s memory (writes to one show in the other); the
    dtype is kept (float64 stays float64), as in ``torch.from_numpy``."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}; "
                        "use md.tensor(data) for other data")
    return Tensor(array)


def as_tensor(data: Any, dtype: Any = None, device: str | None = None) -> Tensor:
    """``data`` as a Tensor without a copy where possible, as ``torch.as_tensor``: a Tensor or
    an array already of that dtype and on that device is shared, anything else is copied
    (by :func:`~minidl.autograd.tensor`'s rules)."""
    array = data.data if isinstance(data, Tensor) else data
    if hasattr(array, "dtype") and hasattr(array, "shape") and not isinstance(array, np.generic):
        target = device or device_of(array)
        if (dtype is None or np.dtype(dtype) == array.dtype) and target == device_of(array):
            return data if isinstance(data, Tensor) else Tensor(array)
        moved = to_device(array, target)
        return Tensor(get_array_module(moved).asarray(moved, dtype=dtype))
    return tensor(data, dtype=dtype, device=device)
