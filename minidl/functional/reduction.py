"""Reductions (sum, mean, var, std, prod, max, min, amax, amin, argmax, argmin, any, all) and
broadcasting (broadcast_to, repeat) with its adjoint, sum_to.

The wrappers take torch's ``dim=`` / ``keepdim=`` and NumPy's ``axis=`` / ``keepdims=`` (and
``ddof=``) with each library's meaning; where one call could mean either (positional
arguments), torch's reading wins.

``sum_to`` sums a broadcast gradient back to an input's shape; every broadcasting op's
backward ends with it. ``reduce_sum`` is the raw-array sum behind them, fast for the
channels-last feature maps the conv kernels return.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import parallel
from ..autograd import Function, Tensor, ViewFunction, as_tensor, is_grad_enabled
from ..backend import get_array_module
from .shape import Transpose, getitem, reshape
from .validation import keywords, resolve_dim, resolve_keepdim

Axis = int | tuple[int, ...] | None

# var/std: whether NumPy's axis= was passed at all (axis=None included), which picks ddof=0
_UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "<unset>"})()


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


class BroadcastTo(ViewFunction):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def view_step(self, i, y, x):
        # a view of x's memory (so it shares x's version counter), read-only: in-place ops
        # refuse to write to it, so the replay only ever reads
        shape = self.shape
        return lambda a: BroadcastTo(shape)(a) if isinstance(a, Tensor) else \
            get_array_module(a).broadcast_to(a, shape)

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
        if builtins.any(x.shape[a] == 0 for a in self.axes):
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


class Prod(Function):
    """Product over axes. The gradient is the product of the other elements: ``y / x`` where
    no reduced element is 0; else computed exactly, by :func:`prod_others` for a first
    derivative, or, when the backward is itself recorded (``create_graph=True``), by
    :func:`_prod_others` from differentiable ops (O(n^2) memory for a group of n elements)."""

    keep_inputs = (0,)
    keep_output = True

    def __init__(self, axis: Axis, keepdims: bool) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _norm_axis(self.axis, x.ndim, "prod")
        return get_array_module(x).asarray(x.prod(axis=self.axes, keepdims=self.keepdims))

    def backward(self, gy):
        x, y = self.inputs[0], self.output()
        shape = _keepdims_shape(x.shape, self.axes)
        if not self.keepdims:
            gy, y = reshape(gy, shape), reshape(y, shape)
        if not bool((x.data == 0).any()):
            return broadcast_to(gy * y, x.shape) / x
        others = _prod_others(x, self.axes) if is_grad_enabled() else \
            Tensor(prod_others(x.data, self.axes))
        return broadcast_to(gy, x.shape) * others


def transpose_axes(x: Tensor, order: Sequence[int]) -> Tensor:
    """``x`` with its axes permuted into ``order`` (differentiable)."""
    return Transpose(tuple(order))(x)


def _moved(x_shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[list[int], tuple[int, ...]]:
    """The axis order with the reduced ``axes`` last, and the inverse permutation."""
    order = [a for a in range(len(x_shape)) if a not in axes] + list(axes)
    return order, tuple(int(i) for i in np.argsort(order))


def prod_others(x: Any, axes: tuple[int, ...]) -> Any:
    """On raw arrays: for each element, the product of the other elements of its reduced group,
    exact where some are 0 (exclusive cumulative products from both ends of the flattened
    group). A first derivative only, so it is a constant, not a Function."""
    xp = get_array_module(x)
    order, back = _moved(x.shape, axes)
    moved = x.transpose(order)
    flat = moved.reshape(moved.shape[:x.ndim - len(axes)] + (-1,))
    ones = xp.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.cumprod(xp.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return xp.ascontiguousarray((left * right).reshape(moved.shape).transpose(back))


def _prod_others(x: Tensor, axes: tuple[int, ...]) -> Tensor:
    """:func:`prod_others` from differentiable ops: each group of n elements becomes an
    (n, n) matrix holding the group in every row with 1 on the diagonal, whose row products
    are the products of the others."""
    order, back = _moved(x.shape, axes)
    moved = transpose_axes(x, order)
    kept = moved.shape[:x.ndim - len(axes)]
    n = _count(x, axes)
    rows = broadcast_to(reshape(moved, kept + (1, n)), kept + (n, n))
    eye = Tensor(get_array_module(x.data).eye(n, dtype=x.dtype))
    others = Prod(-1, False)(rows * (1 - eye) + eye)
    return transpose_axes(reshape(others, moved.shape), back)


# ---- wrappers -----------------------------------------------------------------------------

class MaxResult(NamedTuple):
    """``(values, indices)`` of ``max(x, dim)``, as ``torch.return_types.max``."""

    values: Tensor
    indices: Tensor


class MinResult(NamedTuple):
    """``(values, indices)`` of ``min(x, dim)``, as ``torch.return_types.min``."""

    values: Tensor
    indices: Tensor


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


def repeat(x: Tensor, *sizes: int) -> Tensor:
    """torch's ``x.repeat(2, 3)`` (NumPy's ``tile``): the tensor repeated ``sizes[i]`` times
    along dim i; extra leading sizes add dims. Built from reshape and broadcast, so it is
    differentiable (the gradient sums over the copies)."""
    reps = tuple(sizes[0]) if len(sizes) == 1 and not isinstance(sizes[0], (int, np.integer)) \
        else tuple(sizes)
    if len(reps) < x.ndim or builtins.any(isinstance(r, bool) or r < 0 or
                                          not isinstance(r, (int, np.integer)) for r in reps):
        raise ValueError(f"repeat: needs one non-negative int per dim ({x.ndim} or more) for "
                         f"shape {tuple(x.shape)}, got {reps}")
    shape = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
    spread = tuple(v for n in shape for v in (1, n))
    wide = tuple(v for r, n in zip(reps, shape) for v in (int(r), n))
    return reshape(broadcast_to(reshape(x, spread), wide),
                   tuple(int(r) * n for r, n in zip(reps, shape)))


def _cast_for(x: Tensor, dtype: Any) -> Tensor:
    return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)


def _count(x: Tensor, axes: tuple[int, ...]) -> int:
    return int(np.prod([x.shape[a] for a in axes])) if axes else 1


@keywords
def sum(x: Tensor, dim: Axis = None, keepdim: bool = False, *,  # noqa: A001
        axis: Axis = None, keepdims: bool | None = None, dtype: Any = None) -> Tensor:
    """Sum over ``dim`` (one int or a tuple; all dims when None): (..) -> reduced shape.

    ``axis=`` / ``keepdims=`` are NumPy's names for ``dim`` / ``keepdim``; ``dtype`` casts
    first (``x.sum(dtype=md.float64)``).
    """
    dim, keep = resolve_dim("sum", dim, axis), resolve_keepdim("sum", keepdim, keepdims)
    return Sum(dim, keep)(_cast_for(as_tensor(x), dtype))


@keywords
def mean(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,
         keepdims: bool | None = None, dtype: Any = None) -> Tensor:
    """Arithmetic mean over ``dim`` (``axis=``/``keepdims=`` accepted as NumPy's names)."""
    dim, keep = resolve_dim("mean", dim, axis), resolve_keepdim("mean", keepdim, keepdims)
    x = _cast_for(as_tensor(x), dtype)
    return Sum(dim, keep)(x) / _count(x, _norm_axis(dim, x.ndim, "mean"))


def _correction(op: str, correction: Any, unbiased: Any, ddof: Any, numpy_spelling: bool) -> Any:
    """The divisor's offset: torch's ``correction``/``unbiased`` or NumPy's ``ddof``."""
    given = [n for n, v in (("correction", correction), ("unbiased", unbiased), ("ddof", ddof))
             if v is not None]
    if len(given) > 1:
        raise TypeError(f"{op}: got {' and '.join(g + '=' for g in given)}; pass one "
                        "(correction= is torch's name, ddof= NumPy's)")
    if correction is not None:
        return correction
    if unbiased is not None:
        return int(bool(unbiased))
    if ddof is not None:
        return ddof
    return 0 if numpy_spelling else 1


def _variance(op: str, x: Tensor, dim: Axis, unbiased: Any, keepdim: bool, correction: Any,
              axis: Any, keepdims: bool | None, ddof: Any) -> Tensor:
    numpy_spelling = axis is not _UNSET or keepdims is not None or ddof is not None
    c = _correction(op, correction, unbiased, ddof, numpy_spelling)
    axis = None if axis is _UNSET else axis
    dim, keep = resolve_dim(op, dim, axis), resolve_keepdim(op, keepdim, keepdims)
    x = as_tensor(x)
    n = _count(x, _norm_axis(dim, x.ndim, op))
    centered = x - mean(x, dim, keepdim=True)
    return Sum(dim, keep)(centered * centered) / (n - c)


@keywords
def var(x: Tensor, dim: Axis = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: float | None = None, axis: Axis = _UNSET, keepdims: bool | None = None,
        ddof: float | None = None) -> Tensor:
    """Variance over ``dim``: ``sum((x - mean)^2) / (N - correction)``.

    As in torch, the default is the unbiased estimate (``correction=1``; ``unbiased=False``
    or ``correction=0`` for the population variance), and the third positional argument is
    ``unbiased``. NumPy's spelling keeps NumPy's meaning: a call that uses ``axis=`` or
    ``keepdims=`` defaults to ``ddof=0``, and ``ddof=`` is ``correction=``. So
    ``x.var(1)`` and ``x.var(dim=1)`` are unbiased, ``x.var(axis=1)`` is not.
    """
    return _variance("var", x, dim, unbiased, keepdim, correction, axis, keepdims, ddof)


@keywords
def std(x: Tensor, dim: Axis = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: float | None = None, axis: Axis = _UNSET, keepdims: bool | None = None,
        ddof: float | None = None) -> Tensor:
    """Standard deviation, ``sqrt(var(...))``, with :func:`var`'s arguments and defaults
    (unbiased unless NumPy's ``axis=``/``keepdims=``/``ddof=`` spelling is used)."""
    return _variance("std", x, dim, unbiased, keepdim, correction, axis, keepdims, ddof) ** 0.5


@keywords
def prod(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,
         keepdims: bool | None = None, dtype: Any = None) -> Tensor:
    """Product over ``dim``; differentiable (exactly, also where elements are 0)."""
    dim, keep = resolve_dim("prod", dim, axis), resolve_keepdim("prod", keepdim, keepdims)
    return Prod(dim, keep)(_cast_for(as_tensor(x), dtype))


def _values_indices(x: Tensor, dim: int, keepdim: bool, reducer: str) -> tuple[Tensor, Tensor]:
    """torch's ``max(x, dim)``: the extreme along ``dim`` and its (first) index. The values
    are gathered at the indices, so their gradient goes to that one element, as in torch."""
    x = as_tensor(x)
    xp = get_array_module(x.data)
    if x.ndim == 0:
        return x, Tensor(xp.zeros((), dtype=np.int64))
    d = _norm_axis(dim, x.ndim, reducer)[0]
    if x.shape[d] == 0:
        raise ValueError(f"{reducer}: cannot reduce an empty dim (tensor of shape "
                         f"{tuple(x.shape)}, dim {dim})")
    idx = getattr(x.data, "arg" + reducer)(axis=d)
    rest = [i for i in range(x.ndim) if i != d]
    index = tuple(idx if i == d else
                  xp.arange(x.shape[i]).reshape([-1 if r == i else 1 for r in rest])
                  for i in range(x.ndim))
    values, indices = getitem(x, index), Tensor(xp.asarray(idx, dtype=np.int64))
    if keepdim:
        shape = _keepdims_shape(x.shape, (d,))
        values, indices = reshape(values, shape), reshape(indices, shape)
    return values, indices


def _extreme(x: Tensor, dim: Any, keepdim: bool, axis: Axis, keepdims: bool | None,
             reducer: str) -> Any:
    if isinstance(dim, Tensor):
        other = "maximum" if reducer == "max" else "minimum"
        raise TypeError(f"{reducer}: for the elementwise {reducer} of two tensors use "
                        f"F.{other}(a, b) or a.{reducer}(b)")
    keep = resolve_keepdim(reducer, keepdim, keepdims)
    if axis is None and isinstance(dim, (int, np.integer)):
        values, indices = _values_indices(x, int(dim), keep, reducer)
        return (MaxResult if reducer == "max" else MinResult)(values, indices)
    fn = Max if reducer == "max" else Min
    return fn(resolve_dim(reducer, dim, axis), keep)(x)


@keywords
def max(x: Tensor, dim: Any = None, keepdim: bool = False, *, axis: Axis = None,  # noqa: A001
        keepdims: bool | None = None) -> Any:
    """The maximum, as in torch: ``max(x)`` is the value; ``max(x, dim)`` (an int) returns
    ``(values, indices)`` (a named tuple; the values' gradient goes to the index).

    NumPy's ``axis=`` (an int or a tuple) and a tuple ``dim`` return the values only, as
    ``numpy.max`` and ``amax``; tied maxima then share the gradient evenly.
    """
    return _extreme(x, dim, keepdim, axis, keepdims, "max")


@keywords
def min(x: Tensor, dim: Any = None, keepdim: bool = False, *, axis: Axis = None,  # noqa: A001
        keepdims: bool | None = None) -> Any:
    """The minimum: ``min(x)`` the value, ``min(x, dim)`` ``(values, indices)``; see :func:`max`."""
    return _extreme(x, dim, keepdim, axis, keepdims, "min")


@keywords
def amax(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,
         keepdims: bool | None = None) -> Tensor:
    """The maximum values over ``dim`` (int, tuple or None); tied maxima share the gradient."""
    return Max(resolve_dim("amax", dim, axis), resolve_keepdim("amax", keepdim, keepdims))(x)


@keywords
def amin(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,
         keepdims: bool | None = None) -> Tensor:
    """The minimum values over ``dim``; tied minima share the gradient."""
    return Min(resolve_dim("amin", dim, axis), resolve_keepdim("amin", keepdim, keepdims))(x)


def _arg(x: Tensor, dim: Any, keepdim: bool, axis: Any, keepdims: bool | None,
         op: str) -> Tensor:
    x = as_tensor(x)
    dim, keep = resolve_dim(op, dim, axis), resolve_keepdim(op, keepdim, keepdims)
    xp = get_array_module(x.data)
    if dim is None:
        out = getattr(x.data, op)()
        return Tensor(xp.asarray(out, dtype=np.int64).reshape((1,) * x.ndim if keep else ()))
    d = _norm_axis(int(dim), x.ndim, op)[0] if x.ndim else 0
    out = getattr(x.data, op)(axis=d, keepdims=keep) if x.ndim else x.data.argmax()
    return Tensor(xp.asarray(out, dtype=np.int64))


@keywords
def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False, *, axis: int | None = None,
           keepdims: bool | None = None) -> Tensor:
    """Index of the (first) maximum along ``dim``, int64; of the flattened tensor when None."""
    return _arg(x, dim, keepdim, axis, keepdims, "argmax")


@keywords
def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False, *, axis: int | None = None,
           keepdims: bool | None = None) -> Tensor:
    """Index of the (first) minimum along ``dim``, int64."""
    return _arg(x, dim, keepdim, axis, keepdims, "argmin")


def _logical(x: Tensor, dim: Axis, keepdim: bool, axis: Axis, keepdims: bool | None,
             op: str) -> Tensor:
    x = as_tensor(x)
    dim, keep = resolve_dim(op, dim, axis), resolve_keepdim(op, keepdim, keepdims)
    axes = _norm_axis(dim, x.ndim, op)
    xp = get_array_module(x.data)
    return Tensor(xp.asarray(getattr(x.data.astype(bool), op)(axis=axes, keepdims=keep)))


@keywords
def any(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,  # noqa: A001
        keepdims: bool | None = None) -> Tensor:
    """Whether any element (along ``dim``) is nonzero: a bool tensor (not differentiable)."""
    return _logical(x, dim, keepdim, axis, keepdims, "any")


@keywords
def all(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,  # noqa: A001
        keepdims: bool | None = None) -> Tensor:
    """Whether every element (along ``dim``) is nonzero: a bool tensor (not differentiable)."""
    return _logical(x, dim, keepdim, axis, keepdims, "all")
