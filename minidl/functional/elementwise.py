"""Arithmetic, reductions, shape ops, indexing and joins: the ops every network is made of.

Each op is one ``Function`` subclass (forward on raw arrays, backward with minidl ops on
Tensors) and one snake_case wrapper. Binary ops broadcast like NumPy; their backward sums
the gradient back to each input's shape with :func:`sum_to`.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import parallel
from ..autograd import Function, Tensor, as_tensor
from ..backend import get_array_module, scatter_add
from ..backend import to_device as _array_to_device

Axis = int | tuple[int, ...] | None


def _name(fn: Function) -> str:
    return type(fn).__name__.lower()


def _check_binary(fn: Function, a: Any, b: Any) -> None:
    """Called only when dtypes differ: floats may promote, but float with int/bool may not."""
    if (a.dtype.kind == "f") != (b.dtype.kind == "f"):
        raise TypeError(f"{_name(fn)}: cannot mix dtypes {a.dtype} (shape {tuple(a.shape)}) and "
                        f"{b.dtype} (shape {tuple(b.shape)}); cast one with .astype()/.float()")


def _broadcast_error(fn: Function, a: Any, b: Any) -> ValueError:
    return ValueError(f"{_name(fn)}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                      "broadcast together")


class _Binary(Function):
    """Shared forward: dtype check and a readable broadcasting error."""

    def forward(self, a: Any, b: Any) -> Any:
        if a.dtype != b.dtype:
            _check_binary(self, a, b)
        try:
            return self.compute(a, b)
        except ValueError:
            raise _broadcast_error(self, a, b) from None

    def compute(self, a: Any, b: Any) -> Any:
        raise NotImplementedError


class Add(_Binary):
    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        sa, sb = self.input_shapes
        return sum_to(gy, sa), sum_to(gy, sb)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        sa, sb = self.input_shapes
        gb = -sum_to(gy, sb) if self.needs_input_grad[1] else None
        return sum_to(gy, sa), gb


class Mul(_Binary):
    keep_inputs = (0, 1)

    def compute(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b, self.input_shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(gy * a, self.input_shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Div(_Binary):
    keep_inputs = (0, 1)

    def compute(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy / b, self.input_shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), self.input_shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Pow(_Binary):
    keep_inputs = (0, 1)
    keep_output = True

    def compute(self, a, b):
        return a ** b

    def backward(self, gy):
        a, b = self.inputs
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(gy * b * a ** (b - 1), self.input_shapes[0])
        if self.needs_input_grad[1]:
            gb = sum_to(gy * self.output() * log(a), self.input_shapes[1])
        return ga, gb


class _Pick(_Binary):
    """Elementwise max or min; at ties the gradient is split evenly between both inputs."""

    keep_inputs = (0, 1)
    picks = "maximum"

    def compute(self, a, b):
        return getattr(get_array_module(a), self.picks)(a, b)

    def backward(self, gy):
        a, b = self.inputs
        a_wins = a.data > b.data if self.picks == "maximum" else a.data < b.data
        wa = a_wins + 0.5 * (a.data == b.data)
        ga = sum_to(gy * Tensor(wa.astype(gy.dtype)), self.input_shapes[0])
        gb = sum_to(gy * Tensor((1 - wa).astype(gy.dtype)), self.input_shapes[1])
        return ga, gb


class Maximum(_Pick):
    picks = "maximum"


class Minimum(_Pick):
    picks = "minimum"


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    keep_output = True

    def forward(self, x):
        return get_array_module(x).exp(x)

    def backward(self, gy):
        return gy * self.output()


class Log(Function):
    keep_inputs = (0,)

    def forward(self, x):
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class Sqrt(Function):
    keep_output = True

    def forward(self, x):
        return get_array_module(x).sqrt(x)

    def backward(self, gy):
        return gy / (2 * self.output())


class Abs(Function):
    """|x|; the gradient at 0 is 0 (the subgradient NumPy's sign gives)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, gy):
        return gy * Tensor(self.sign)


class Clip(Function):
    """Clamp to [lo, hi]; the gradient passes where lo <= x <= hi."""

    def __init__(self, lo: float | None, hi: float | None) -> None:
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = get_array_module(x)
        if self.needs_input_grad[0]:
            inside = xp.ones(x.shape, dtype=bool)
            if self.lo is not None:
                inside &= x >= self.lo
            if self.hi is not None:
                inside &= x <= self.hi
            self.inside = inside
        return xp.clip(x, self.lo, self.hi)

    def backward(self, gy):
        return gy * Tensor(self.inside.astype(gy.dtype))


class Where(Function):
    """``where(cond, a, b)``; cond is a constant boolean array."""

    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def forward(self, a, b):
        if a.dtype != b.dtype:
            _check_binary(self, a, b)
        try:
            xp = get_array_module(a)
            # cond may be a host mask (as backward allows): cupy.where takes device arrays only
            return xp.where(xp.asarray(self.cond), a, b)
        except ValueError:
            raise ValueError(f"where: condition of shape {np.shape(self.cond)} and operands "
                             f"of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                             "broadcast together") from None

    def backward(self, gy):
        xp = get_array_module(gy.data)
        mask = Tensor(xp.asarray(self.cond, dtype=gy.dtype))
        ga = sum_to(gy * mask, self.input_shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(gy * (1 - mask), self.input_shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Cast(Function):
    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.input_dtypes[0])


class ToDevice(Function):
    def __init__(self, device: str) -> None:
        self.device = device

    def forward(self, x):
        self.source = "cuda" if get_array_module(x) is not np else "cpu"
        return _array_to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self.source)


# ---- broadcasting and reductions ----------------------------------------------------------

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


def memory_order(a: Any) -> tuple[int, ...]:
    """The axes of array ``a`` from the outermost in memory to the innermost.

    (0, 1, 2, 3) for a C-ordered NCHW array; (0, 2, 3, 1) for the channels-last feature
    maps the CPU conv kernels return.
    """
    return tuple(sorted(range(a.ndim), key=lambda i: -a.strides[i]))


def empty_in_order(xp: Any, shape: tuple[int, ...], dtype: Any,
                   order: tuple[int, ...] | None) -> Any:
    """An uninitialised array of ``shape`` whose axes lie in memory in ``order``.

    Ops that build a new array from a feature map (padding, concatenation, the gradient of
    indexing) use it to keep that map's layout: NumPy would otherwise hand back C order,
    and a channels-last map turned NCHW costs a transposing copy in the next conv.
    """
    if order is None or len(order) != len(shape) or list(order) == sorted(order):
        return xp.empty(shape, dtype)
    stored = xp.empty(tuple(shape[i] for i in order), dtype)
    return stored.transpose(tuple(int(i) for i in np.argsort(order)))


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
                flat = np.ones(m, x.dtype) @ xt.reshape(m, -1)
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


# ---- matmul -------------------------------------------------------------------------------

class MatMul(Function):
    """``a @ b`` with NumPy semantics: 1-D operands and broadcast batch dimensions."""

    keep_inputs = (0, 1)

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
        inner = b.shape[-2 if b.ndim > 1 else 0]
        if a.shape[-1] != inner:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)}: inner "
                             f"dimensions {a.shape[-1]} and {inner} differ")
        if a.dtype != b.dtype:
            _check_binary(self, a, b)
        try:
            return parallel.matmul(a, b)
        except ValueError:
            raise _broadcast_error(self, a, b) from None

    def backward(self, gy):
        a, b = self.inputs
        a2 = a if a.ndim > 1 else reshape(a, (1, a.shape[0]))
        b2 = b if b.ndim > 1 else reshape(b, (b.shape[0], 1))
        out_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
        gy2 = reshape(gy, out_shape)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = reshape(sum_to(matmul(gy2, swapaxes(b2, -1, -2)), a2.shape), a.shape)
        if self.needs_input_grad[1]:
            gb = reshape(sum_to(matmul(swapaxes(a2, -1, -2), gy2), b2.shape), b.shape)
        return ga, gb


class Linear(Function):
    """``x @ w.T + b`` fused: x (..., in), w (out, in), b (out,) -> (..., out)."""

    keep_inputs = (0, 1)

    def forward(self, x, w, b=None):
        if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
            fan_in = w.shape[1] if w.ndim == 2 else "?"
            raise ValueError(f"linear: input of shape {tuple(x.shape)} does not match weight "
                             f"of shape {tuple(w.shape)} (expected input (..., {fan_in}))")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {tuple(b.shape)} does not match weight "
                             f"of shape {tuple(w.shape)}")
        if x.ndim > 2:  # (..., in) as one (rows, in) matrix, so that it can be split too
            y = parallel.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(*x.shape[:-1], -1)
        else:
            y = parallel.matmul(x, w.T)
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.inputs[0], self.inputs[1]
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = matmul(gy, w)
        if self.needs_input_grad[1]:
            g2 = reshape(gy, (-1, gy.shape[-1]))
            gw = matmul(swapaxes(g2, 0, 1), reshape(x, (-1, x.shape[-1])))
        if len(self.input_shapes) > 2 and self.needs_input_grad[2]:
            gb = sum_to(gy, self.input_shapes[2])
        return (gx, gw, gb) if len(self.input_shapes) > 2 else (gx, gw)


# ---- shape ops ----------------------------------------------------------------------------

class Reshape(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) to {self.shape}") from None

    def backward(self, gy):
        return reshape(gy, self.input_shapes[0])


class Transpose(Function):
    def __init__(self, axes: tuple[int, ...] | None) -> None:
        self.axes = axes

    def forward(self, x):
        axes = tuple(reversed(range(x.ndim))) if self.axes is None else self.axes
        if sorted(a % builtins.max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"permute: axes {axes} are not a permutation of the "
                             f"{x.ndim} dims of shape {tuple(x.shape)}")
        self.axes = tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, gy):
        return transpose(gy, tuple(int(i) for i in np.argsort(self.axes)))


def _index_arrays(index: Any) -> Any:
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis
               for i in items)


class GetItem(Function):
    def __init__(self, index: Any) -> None:
        self.index = index

    def forward(self, x):
        try:
            y = get_array_module(x).asarray(x[self.index])
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor shape {tuple(x.shape)})") from None
        self.order = memory_order(x)
        return y

    def backward(self, gy):
        return GetItemGrad(self.index, self.input_shapes[0], self.order)(gy)


class GetItemGrad(Function):
    """Scatter-add ``gy`` into zeros of the source shape; repeated indices accumulate.

    ``order`` is the memory order of the source's axes (see :func:`memory_order`): the
    gradient is laid out like the tensor it is the gradient of.
    """

    def __init__(self, index: Any, shape: tuple[int, ...],
                 order: tuple[int, ...] | None = None) -> None:
        self.index, self.shape, self.order = index, shape, order

    def forward(self, gy):
        xp = get_array_module(gy)
        gx = empty_in_order(xp, self.shape, gy.dtype, self.order)
        gx.fill(0)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:
            scatter_add(gx, self.index, gy)
        return gx

    def backward(self, ggx):
        return getitem(ggx, self.index)


class Concat(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        ref = xs[0]
        axis = self.axis % builtins.max(ref.ndim, 1)
        for x in xs[1:]:
            if x.ndim != ref.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, ref.shape))
                                         if i != axis):
                raise ValueError(f"cat: shapes {[tuple(x.shape) for x in xs]} differ outside "
                                 f"axis {self.axis}")
        self.axis = axis
        shape = list(ref.shape)
        shape[axis] = builtins.sum(x.shape[axis] for x in xs)
        # keep the inputs' memory layout (NumPy would return C order, i.e. NCHW for
        # channels-last feature maps, and every later conv would transpose it back)
        out = empty_in_order(xp, tuple(shape), np.result_type(*[x.dtype for x in xs]),
                             memory_order(ref))
        return xp.concatenate(xs, axis=axis, out=out)

    def backward(self, gy):
        sizes = [s[self.axis] for s in self.input_shapes]
        return split(gy, sizes, axis=self.axis)


class Split(Function):
    def __init__(self, sizes: Sequence[int], axis: int) -> None:
        self.sizes, self.axis = list(sizes), axis

    def forward(self, x):
        axis = self.axis % x.ndim
        if builtins.sum(self.sizes) != x.shape[axis]:
            raise ValueError(f"split: sizes {self.sizes} do not add up to {x.shape[axis]} "
                             f"(axis {self.axis} of shape {tuple(x.shape)})")
        self.axis = axis
        xp = get_array_module(x)
        return tuple(xp.split(x, np.cumsum(self.sizes)[:-1].tolist(), axis=axis))

    def backward(self, *gys):
        return cat(list(gys), axis=self.axis)


class Pad(Function):
    """Constant padding; ``widths`` is a per-axis list of (before, after)."""

    def __init__(self, widths: list[tuple[int, int]], value: float) -> None:
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = get_array_module(x)
        shape = tuple(n + b + a for n, (b, a) in zip(x.shape, self.widths))
        y = empty_in_order(xp, shape, x.dtype, memory_order(x))  # x's layout, not C order
        y.fill(self.value)
        y[tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, self.widths))] = x
        return y

    def backward(self, gy):
        index = tuple(slice(b, n + b) for (b, _), n in zip(self.widths, self.input_shapes[0]))
        return getitem(gy, index)


# ---- wrappers -----------------------------------------------------------------------------

def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    return Add()(a, b)


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return Sub()(a, b)


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return Mul()(a, b)


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return Div()(a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - mirrors torch.pow
    """Elementwise ``a ** b``; either may be a tensor."""
    return Pow()(a, b)


def neg(x: Tensor) -> Tensor:
    return Neg()(x)


def exp(x: Tensor) -> Tensor:
    """Elementwise e**x."""
    return Exp()(x)


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    return Log()(x)


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    return Sqrt()(x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    """Elementwise |x|."""
    return Abs()(x)


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clamp every element into [min, max]."""
    return Clip(min, max)(x)


clamp = clip


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``cond`` holds, else ``b`` (cond: a boolean Tensor or array)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    return Where(cond)(a, b)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly."""
    return Maximum()(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; ties split the gradient evenly."""
    return Minimum()(a, b)


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


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy semantics (1-D operands, broadcast batch dims)."""
    return MatMul()(a, b)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``x @ w.T + b``: x (..., in), w (out, in), b (out,) -> (..., out)."""
    return Linear()(x, w) if b is None else Linear()(x, w, b)


def reshape(x: Tensor, shape: Sequence[int] | int, *more: int) -> Tensor:
    """The same data viewed with a new shape (one dimension may be -1)."""
    shape = (shape, *more) if isinstance(shape, int) else tuple(shape)
    if x.shape == shape:
        return x
    return Reshape(shape)(x)


def transpose(x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Permute the axes (reverse them when ``axes`` is None)."""
    return Transpose(None if axes is None else tuple(axes))(x)


def permute(x: Tensor, *axes: int) -> Tensor:
    """``x.permute(0, 2, 3, 1)``-style axis permutation."""
    if len(axes) == 1 and not isinstance(axes[0], int):
        axes = tuple(axes[0])
    return transpose(x, axes)


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    """Exchange two axes."""
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def flatten(x: Tensor, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one (default: all but the batch dim)."""
    nd = x.ndim
    s, e = start_dim % nd, end_dim % nd
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


def squeeze(x: Tensor, axis: int | None = None) -> Tensor:
    """Drop size-1 dims (only ``axis`` if given)."""
    if axis is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    axis = axis % x.ndim
    if x.shape[axis] != 1:
        raise ValueError(f"squeeze: axis {axis} of shape {x.shape} has size {x.shape[axis]}, not 1")
    return reshape(x, x.shape[:axis] + x.shape[axis + 1:])


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    """Insert a size-1 dim at ``axis``."""
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` with basic and advanced indexing."""
    return GetItem(_index_arrays(index))(x)


def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Concatenate along an existing ``axis``."""
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    return Concat(axis)(*tensors)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join along a new ``axis``."""
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    shapes = {as_tensor(t).shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have one shape, got {sorted(shapes)}")
    return cat([unsqueeze(as_tensor(t), axis) for t in tensors], axis=axis)


def split(x: Tensor, split_size_or_sections: int | Sequence[int],
          axis: int = 0) -> tuple[Tensor, ...]:
    """Split into chunks of one size (int) or of the given sizes (list), like torch.split."""
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        k = split_size_or_sections
        if k <= 0:
            raise ValueError(f"split: chunk size must be positive, got {k}")
        sizes = [k] * (n // k) + ([n % k] if n % k else [])
    else:
        sizes = list(split_size_or_sections)
    out = Split(sizes, axis)(x)
    return out if isinstance(out, tuple) else (out,)


def pad(x: Tensor, pad: Sequence[int], value: float = 0.0) -> Tensor:
    """Constant padding, torch-style: ``pad=(left, right, top, bottom, ...)`` from the last dim."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: {tuple(pad)} must hold (before, after) pairs for at most "
                         f"{x.ndim} dims")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if any(b < 0 or a < 0 for b, a in widths):
        raise ValueError(f"pad: negative padding {tuple(pad)} is not supported")
    return Pad(widths, value)(x)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Differentiable dtype cast."""
    if x.dtype == np.dtype(dtype):
        return x
    return Cast(dtype)(x)


def to_device(x: Tensor, device: str) -> Tensor:
    """Differentiable copy to another device."""
    if x.device == device:
        return x
    return ToDevice(device)(x)


def _compare(op: str) -> Any:
    def compare(a: Tensor, b: Any) -> Tensor:
        other = b.data if isinstance(b, Tensor) else b
        return Tensor(getattr(a.data, op)(other))
    compare.__name__ = op
    return compare


def _install_tensor_methods() -> None:
    """Attach operators and methods to Tensor (autograd sits below this layer)."""
    T = Tensor
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


_install_tensor_methods()
