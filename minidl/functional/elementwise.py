"""Elementwise ops: arithmetic, exp/log/sqrt/abs, clip, where, maximum/minimum, clone, casts,
device moves.

Each op is one ``Function`` subclass (forward on raw arrays, backward with minidl ops on
Tensors) and one snake_case wrapper. Binary ops broadcast like NumPy; their backward sums
the gradient back to each input's shape with :func:`~minidl.functional.reduction.sum_to`.
Mixed dtypes promote as in torch (:func:`promote`): a float operand's dtype beats an integer
or bool one (so a Python float keeps a float32 tensor float32, and an int tensor times 0.5 is
float32), two float tensors give the wider one, and a 0-d float tensor does not widen a
dimensioned float tensor. Add, Sub, Mul and Div of two large NumPy float arrays of one shape
and dtype run block by block on the worker threads (:func:`minidl.parallel.elementwise`:
the same ufunc on every element, so the same bits).
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .. import parallel
from ..autograd import Cast, Function, Tensor, ToDevice
from ..backend import get_array_module
from .reduction import SumTo, sum_to
from .validation import keywords


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


def promote(a: Any, b: Any) -> tuple[Any, Any]:
    """Two arrays cast to one dtype by torch's rules (called only when their dtypes differ).

    A float beats an integer or bool (the float's dtype is kept); between floats a 0-d array
    takes the dimensioned one's dtype, otherwise NumPy's wider float wins; integers and bools
    among themselves promote as NumPy does.
    """
    fa, fb = a.dtype.kind == "f", b.dtype.kind == "f"
    if fa != fb:
        return (a, b.astype(a.dtype)) if fa else (a.astype(b.dtype), b)
    if fa and (a.ndim == 0) != (b.ndim == 0):
        return (a, b.astype(a.dtype)) if b.ndim == 0 else (a.astype(b.dtype), b)
    return a, b


def _sum_to_data(g: Any, shape: tuple[int, ...]) -> Any:
    """:func:`sum_to` on a raw array, by the same kernel (for the ``fast_backward`` paths)."""
    return g if g.shape == shape else SumTo(shape).forward(g)


def _same_dtypes(fn: Function, gy: Any) -> bool:
    """Whether both inputs and the gradient share one dtype: then NumPy's arithmetic on the
    arrays is exactly what the Tensor ops of ``backward`` compute (no promotion rule)."""
    da, db = fn.input_dtypes
    return da == db == gy.dtype


class _Binary(Function):
    """Shared forward: torch's dtype promotion and a readable broadcasting error."""

    #: the NumPy ufunc ``compute`` is, run in blocks on large float operands of one shape
    ufunc: Any = None

    def forward(self, a: Any, b: Any) -> Any:
        if a.dtype != b.dtype:
            a, b = promote(a, b)
        elif a.nbytes >= parallel.ELEMENTWISE_MIN_BYTES and self.ufunc is not None \
                and a.shape == b.shape and a.dtype.kind == "f" \
                and type(a) is np.ndarray and type(b) is np.ndarray \
                and parallel.get_num_threads() > 1:
            # (blocked(a) spelled out: the size test first, every small op passes here.) One
            # ufunc has no temporaries to keep in the cache: blocks pay only on threads.
            return parallel.elementwise(self.ufunc, (a.dtype,), a, b)[0]
        try:
            return self.compute(a, b)
        except ValueError:
            raise _broadcast_error(self, a, b) from None

    def compute(self, a: Any, b: Any) -> Any:
        """The op on two arrays of one dtype (a subclass may set it to ``operator.add`` and
        the like: a builtin is no method, so ``self.compute(a, b)`` calls it on a, b)."""
        raise NotImplementedError


class Add(_Binary):
    compute = operator.add  # in C, not one more Python call per op
    ufunc = np.add

    def backward(self, gy):
        sa, sb = self.input_shapes
        return sum_to(gy, sa), sum_to(gy, sb)

    def fast_backward(self, gy):
        sa, sb = self.input_shapes
        need = self.needs_input_grad
        return (_sum_to_data(gy, sa) if need[0] else None,
                _sum_to_data(gy, sb) if need[1] else None)


class Sub(_Binary):
    compute = operator.sub  # in C, not one more Python call per op
    ufunc = np.subtract

    def backward(self, gy):
        sa, sb = self.input_shapes
        gb = -sum_to(gy, sb) if self.needs_input_grad[1] else None
        return sum_to(gy, sa), gb

    def fast_backward(self, gy):
        sa, sb = self.input_shapes
        need = self.needs_input_grad
        return (_sum_to_data(gy, sa) if need[0] else None,
                -_sum_to_data(gy, sb) if need[1] else None)


class Mul(_Binary):
    keep_inputs = (0, 1)

    compute = operator.mul  # in C, not one more Python call per op
    ufunc = np.multiply

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b, self.input_shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(gy * a, self.input_shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb

    def fast_backward(self, gy):
        if not _same_dtypes(self, gy):
            return NotImplemented
        a, b = self.inputs
        sa, sb = self.input_shapes
        need = self.needs_input_grad
        return (_sum_to_data(gy * b.data, sa) if need[0] else None,
                _sum_to_data(gy * a.data, sb) if need[1] else None)


class Div(_Binary):
    keep_inputs = (0, 1)

    compute = operator.truediv  # in C, not one more Python call per op
    ufunc = np.divide

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy / b, self.input_shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), self.input_shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb

    def fast_backward(self, gy):
        if not _same_dtypes(self, gy):
            return NotImplemented
        a, b = self.inputs[0].data, self.inputs[1].data
        sa, sb = self.input_shapes
        need = self.needs_input_grad
        return (_sum_to_data(gy / b, sa) if need[0] else None,
                _sum_to_data(-gy * a / (b * b), sb) if need[1] else None)


class Pow(_Binary):
    keep_inputs = (0, 1)
    keep_output = True

    compute = operator.pow  # in C, not one more Python call per op

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

    def fast_backward(self, gy):
        return (-gy,)


class Exp(Function):
    keep_output = True

    def forward(self, x):
        return get_array_module(x).exp(x)

    def backward(self, gy):
        return gy * self.output()

    def fast_backward(self, gy):  # gy and the output have one shape: no promotion rule
        return (gy * self._outputs[0],)


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


class Copy(Function):
    """A copy of x in memory ``order`` ('K' keeps x's layout, 'C' makes it C-contiguous);
    the gradient passes through unchanged."""

    def __init__(self, order: str) -> None:
        self.order = order

    def forward(self, x):
        return x.copy(order=self.order)

    def backward(self, gy):
        return gy


class Where(Function):
    """``where(cond, a, b)``; cond is a constant boolean array."""

    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def forward(self, a, b):
        if a.dtype != b.dtype:
            a, b = promote(a, b)
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


def _integral(v: Any) -> bool:
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    return kind in ("b", "i", "u") if kind is not None else isinstance(v, int)


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting. True division, as torch's: integer or bool
    operands divide as floats of the default dtype (float32), ``uint8_image / 255`` too."""
    if _integral(a) and _integral(b):
        a = astype(a, np.float32) if isinstance(a, Tensor) else a
        b = astype(b, np.float32) if isinstance(b, Tensor) else b
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            a = np.asarray(a, dtype=np.float32)
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


@keywords
def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clamp every element into [min, max] (``torch.clamp``); the gradient passes inside."""
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        raise TypeError("clamp: min and max must be numbers; for tensor bounds use "
                        "F.maximum(F.minimum(x, hi), lo)")
    return Clip(min, max)(x)


clamp = clip


@keywords
def where(cond: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``cond`` holds, else ``b`` (cond: a boolean Tensor or array)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    return Where(cond)(a, b)


@keywords
def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """``x`` with ``value`` where the boolean ``mask`` (broadcast to x) is True, as torch's
    ``x.masked_fill(mask, value)``; the gradient flows where the mask is False."""
    cond = mask.data if isinstance(mask, Tensor) else mask
    if get_array_module(cond).asarray(cond).dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got dtype "
                        f"{getattr(cond, 'dtype', type(cond).__name__)}; build it with a "
                        "comparison such as x > 0")
    return Where(cond)(Tensor(get_array_module(x.data).asarray(value, dtype=x.dtype)), x)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly."""
    return Maximum()(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; ties split the gradient evenly."""
    return Minimum()(a, b)


def clone(x: Tensor) -> Tensor:
    """A copy with its own memory (same layout), still in the graph: gradients flow back."""
    return Copy("K")(x)


def contiguous(x: Tensor) -> Tensor:
    """``x`` itself if its array is C-contiguous, else a C-contiguous differentiable copy."""
    return x if x.data.flags.c_contiguous else Copy("C")(x)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Differentiable dtype cast (the engine's own :class:`~minidl.autograd.Cast`)."""
    if x.dtype == np.dtype(dtype):
        return x
    return Cast(dtype)(x)


def to_device(x: Tensor, device: str) -> Tensor:
    """Differentiable copy to ``device`` (the engine's own :class:`~minidl.autograd.ToDevice`)."""
    if x.device == device:
        return x
    return ToDevice(device)(x)
