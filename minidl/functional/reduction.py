"""Reductions (sum, mean, var, max, min, argmax) and broadcasting with its adjoint, sum_to.

``sum_to`` sums a broadcast gradient back to an input's shape; every broadcasting op's
backward ends with it. ``reduce_sum`` is the raw-array sum behind them, fast for the
channels-last feature maps the conv kernels return.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import parallel
from ..autograd import Function, Tensor, as_tensor
from ..backend import get_array_module
from .shape import reshape

Axis = int | tuple[int, ...] | None


def _sum_to_axes(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    lead = len(shape) - len(target)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(target)
                                      if n == 1 and shape[lead + i] != 1)
    return axes, lead


class SumTo(Function):
    """Sum a broadcast array back down to ``shape`` (the adjoint of broadcast_to)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def forward(self, x):
        axes, lead = _sum_to_axes(x.shape, self.shape)
        y = reduce_sum(x, axes, keepdims=True) if axes else x
        if lead:
            y = y.reshape(self.shape)
        return get_array_module(x).asarray(y)

    def backward(self, gy):
        return broadcast_to(gy, self.input_shapes[0])


class BroadcastTo(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def forward(self, x):
        try:
            return get_array_module(x).broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast shape {tuple(x.shape)} to "
                             f"{self.shape}") from None

    def backward(self, gy):
        return sum_to(gy, self.input_shapes[0])


# Below this many elements NumPy's own reduction is as fast as anything else.
_GEMV_MIN_SIZE = 4096


def reduce_sum(x: Any, axes: tuple[int, ...], keepdims: bool = False) -> Any:
    """``x.sum(axis=axes, keepdims=keepdims)`` on raw arrays, fast for channels-last data.

    The convolution kernels return NCHW-shaped views of channels-last (N, H, W, C) memory,
    and a conv-bias gradient or a per-channel statistic sums such an array over N, H and W:
    the outer axes in memory. NumPy then adds one C-wide row at a time (C is 6 or 16 in
    small nets), which is 7-20x slower than the matrix-vector product ``ones(M) @ X`` over
    the (M, C) matrix that memory already is (BLAS's GEMV, no less accurate; measured in
    docs/benchmarks.md). That product is used whenever the summed axes are the outermost
    in memory; everything else, and CuPy arrays, go to ``x.sum``.
    """
    if (type(x) is np.ndarray and x.size >= _GEMV_MIN_SIZE and 0 < len(axes) < x.ndim
            and x.dtype.char in "fd"):
        # axes from the largest stride to the smallest: the order of the axes in memory
        order = sorted(range(x.ndim), key=lambda a: -x.strides[a])
        k = len(axes)
        if set(order[:k]) == set(axes):
            xt = x.transpose(order)
            if xt.flags.c_contiguous:
                kept = order[k:]
                m = int(np.prod([x.shape[a] for a in order[:k]]))
                flat = parallel.matmul(np.ones(m, x.dtype), xt.reshape(m, -1))  # fixed BLAS
                y = flat.reshape([x.shape[a] for a in kept])
                # back to the axis order of x (the kept axes may be permuted in memory)
                y = y.transpose(np.argsort(kept))
                if keepdims:
                    y = y.reshape(_keepdims_shape(x.shape, tuple(axes)))
                return y
    return x.sum(axis=axes, keepdims=keepdims)


def _norm_axis(axis: Axis, ndim: int, op: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(out))


def _keepdims_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    def __init__(self, axis: Axis, keepdims: bool) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _norm_axis(self.axis, x.ndim, "sum")
        return get_array_module(x).asarray(reduce_sum(x, self.axes, self.keepdims))

    def backward(self, gy):
        shape = self.input_shapes[0]
        if not self.keepdims:
            gy = reshape(gy, _keepdims_shape(shape, self.axes))
        return broadcast_to(gy, shape)


class _Extreme(Function):
    """max/min over axes; the gradient is split evenly between tied extremes."""

    keep_output = True
    reducer = "max"

    def __init__(self, axis: Axis, keepdims: bool) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        xp = get_array_module(x)
        self.axes = _norm_axis(self.axis, x.ndim, self.reducer)
        if any(x.shape[a] == 0 for a in self.axes):
            raise ValueError(f"{self.reducer}: cannot reduce an empty axis (tensor of shape "
                             f"{tuple(x.shape)}, axis {self.axis})")
        y = getattr(x, self.reducer)(axis=self.axes, keepdims=True)
        if self.needs_input_grad[0]:
            hit = x == y
            self.weights = hit / hit.sum(axis=self.axes, keepdims=True)
        return xp.asarray(y if self.keepdims else y.reshape(
            tuple(n for i, n in enumerate(x.shape) if i not in self.axes)))

    def backward(self, gy):
        shape = self.input_shapes[0]
        if not self.keepdims:
            gy = reshape(gy, _keepdims_shape(shape, self.axes))
        return broadcast_to(gy, shape) * Tensor(self.weights.astype(gy.dtype))


class Max(_Extreme):
    reducer = "max"


class Min(_Extreme):
    reducer = "min"


# ---- wrappers -----------------------------------------------------------------------------

def sum_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Sum ``x`` down to ``shape`` over broadcast dimensions (no-op when shapes agree)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return SumTo(shape)(x)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast ``x`` to ``shape`` like NumPy."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return BroadcastTo(shape)(x)


def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes when None)."""
    return Sum(axis, keepdims)(x)


def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over ``axis``."""
    x = as_tensor(x)
    axes = _norm_axis(axis, x.ndim, "mean")
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    return Sum(axis, keepdims)(x) / n


def var(x: Tensor, axis: Axis = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance over ``axis`` (population variance by default, ``ddof=1`` for unbiased)."""
    x = as_tensor(x)
    axes = _norm_axis(axis, x.ndim, "var")
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    centered = x - mean(x, axis, keepdims=True)
    return sum(centered * centered, axis, keepdims) / (n - ddof)


def max(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient evenly."""
    return Max(axis, keepdims)(x)


def min(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Minimum over ``axis``; tied minima share the gradient evenly."""
    return Min(axis, keepdims)(x)


def argmax(x: Tensor, axis: int | None = None) -> Tensor:
    """Indices of the maxima (not differentiable)."""
    return Tensor(get_array_module(x.data).asarray(x.data.argmax(axis=axis)))
