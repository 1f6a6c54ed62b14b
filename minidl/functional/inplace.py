"""In-place ops with torch's autograd rules: ``x += y``, ``x[i] = v``, ``zero_``, ``add_``, ...

Every in-place op writes into the tensor's own memory (its identity and its array stay the
same, so views and the modules holding it see the change) and adds one to its version
counter, which Functions that saved the tensor check before their backward.

Outside ``no_grad``, when the tensor or the value requires grad, the op is also recorded:
the new value is computed as an ordinary op, written with :class:`SetItem`, and the tensor
is *rebased* onto that node, so gradients flow to the value and to the part of the old
tensor that was not overwritten (as torch's in-place ops do). A view writes through to its
base: the base is rebased, and the view becomes a view of the new base. An in-place op on a
leaf that requires grad (or on a view of one) is an error there, as in torch; inside
``with md.no_grad():`` it just updates the leaf (the manual SGD step).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..autograd import Cast, Function, Tensor, as_tensor, is_grad_enabled
from ..backend import device_of, get_array_module, to_device
from .activation import relu, sigmoid, tanh
from .elementwise import abs, add, clip, div, exp, log, mul, neg, pow, sqrt, sub
from .linalg import matmul
from .reduction import sum_to
from .shape import _index_arrays, empty_in_order, getitem, memory_order, reshape

__all__ = ["SetItem", "ZeroRegion", "setitem", "add_", "sub_", "mul_", "div_", "pow_",
           "matmul_", "clamp_", "zero_", "fill_", "copy_", "install_inplace_methods"]


# ---- the ops --------------------------------------------------------------------------------

class SetItem(Function):
    """``x[index] = v`` as an op: writes v (broadcast) into x's memory and returns that memory.

    ``prefix`` replays the view that x is of its base (None when x is the base itself): the
    write goes to ``prefix(base)[index]``. The gradient flows to v where it was written
    (gathered at the index, so each repeat of an advanced index gets its own, as for
    torch's ``index_put_``) and to the base everywhere else (zero where it was overwritten).
    x: any shape; v: broadcastable to ``x[index]`` -> x's shape.
    """

    def __init__(self, index: Any, prefix: Callable[[Any], Any] | None = None) -> None:
        self.index, self.prefix = index, prefix

    def forward(self, x, v):
        region = x if self.prefix is None else self.prefix(x)
        try:
            region[self.index] = v
        except (IndexError, ValueError) as e:
            raise type(e)(f"setitem: {e} (tensor shape {tuple(region.shape)}, value shape "
                          f"{tuple(v.shape)})") from None
        self.order = memory_order(x)
        return x

    def backward(self, gy):
        gx = gv = None
        if self.needs_input_grad[0]:
            gx = ZeroRegion(self.index, self.prefix, self.order)(gy)
        if self.needs_input_grad[1]:
            region = gy if self.prefix is None else self.prefix(gy)
            gv = _sum_to_value(getitem(region, self.index), self.input_shapes[1])
        return gx, gv


class ZeroRegion(Function):
    """gy with ``prefix(gy)[index]`` set to zero: the gradient that reaches the part of a
    tensor that ``x[index] = v`` did not overwrite. Linear and its own adjoint."""

    def __init__(self, index: Any, prefix: Callable[[Any], Any] | None,
                 order: tuple[int, ...]) -> None:
        self.index, self.prefix, self.order = index, prefix, order

    def forward(self, gy):
        # laid out like the tensor written to, so a prefix (a reshape, say) is a view here too
        g = empty_in_order(get_array_module(gy), gy.shape, gy.dtype, self.order)
        g[...] = gy
        region = g if self.prefix is None else self.prefix(g)
        region[self.index] = 0
        return g

    def backward(self, ggx):
        return ZeroRegion(self.index, self.prefix, self.order)(ggx)


def _sum_to_value(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The gradient of a value broadcast into a region: ``g`` summed down to ``shape``."""
    if len(shape) > g.ndim:  # a value with extra leading 1s, which NumPy allows
        g = reshape(g, (1,) * (len(shape) - g.ndim) + g.shape)
    return sum_to(g, shape)


# ---- the rules every in-place op follows ---------------------------------------------------

_LEAF_ERROR = ("{op}: a leaf Variable that requires grad is being used in an in-place "
               "operation. To update a parameter (an SGD step), do it under "
               "`with md.no_grad():`; to compute with it, use the out-of-place form "
               "(x = x + y) or a .clone()")
_VIEW_OF_LEAF_ERROR = ("{op}: a view of a leaf Variable that requires grad is being used in an "
                       "in-place operation. Do it under `with md.no_grad():`, or write to a "
                       ".clone() of the leaf")


def _records(x: Tensor, op: str, value: Any) -> bool:
    """Whether the in-place op on ``x`` must be recorded for backward; raises torch's
    errors for leaves, and for tensors whose memory cannot be written."""
    root = None if x._view is None else x._view[0]
    grad_mode = is_grad_enabled()
    if grad_mode and x.requires_grad and x.creator is None:
        raise RuntimeError(_LEAF_ERROR.format(op=op))
    if grad_mode and root is not None and root.requires_grad and root.creator is None:
        raise RuntimeError(_VIEW_OF_LEAF_ERROR.format(op=op))
    a = x.data
    if not getattr(a.flags, "writeable", True) or \
            any(st == 0 and n > 1 for st, n in zip(a.strides, a.shape)):
        raise RuntimeError(f"{op}: this tensor (shape {x.shape}) is a broadcast view "
                           "(expand / broadcast_to): several of its elements are one memory "
                           "location; write to a .clone() of it instead")
    if isinstance(value, Tensor) and type(value.data) is not type(a) or \
            hasattr(value, "shape") and not isinstance(value, (Tensor, np.generic)) and \
            device_of(value) != x.device:
        where = value.device if isinstance(value, Tensor) else device_of(value)
        raise ValueError(f"{op}: the tensor is on '{x.device}' but the value is on "
                         f"'{where}'; move it with .to('{x.device}')")
    return grad_mode and (x.requires_grad or (isinstance(value, Tensor) and value.requires_grad)
                          or (root is not None and root.requires_grad))


def _rebase(t: Tensor, out: Tensor) -> None:
    """Make ``t`` the output of ``out``'s node: after an in-place op, ``t`` holds that value."""
    t.creator, t.output_index, t.generation = out.creator, out.output_index, out.generation
    t.requires_grad = out.requires_grad


def _current(x: Tensor) -> Tensor:
    """``x`` with the graph of its value now: a view is replayed on its base, whose node
    may have changed since the view was taken (an earlier in-place op on the base)."""
    return x if x._view is None else x._view[1](x._view[0])


def _write_recorded(x: Tensor, index: Any, value: Tensor) -> None:
    """``x[index] = value`` recorded in the graph; ``x`` (and its base) are rebased."""
    if value.dtype.kind == "f" and x.dtype.kind != "f":
        raise TypeError(f"setitem: a {value.dtype} value that requires grad cannot be stored "
                        f"in a {x.dtype} tensor; convert the tensor with .float()")
    root, prefix = (x, None) if x._view is None else x._view[:2]
    out = SetItem(index, prefix)(root, value)
    _rebase(root, out)
    root._bump_version()
    if root is not x:
        fresh = prefix(root)
        _rebase(x, fresh)
        x._view = fresh._view


def _keep_old_values(new: Tensor, src: Tensor) -> None:
    """If the op that computed ``new`` saved ``src`` for backward, give it a copy of src's
    values instead: src's memory is about to be overwritten with ``new`` (torch saves the
    original self of an in-place op the same way)."""
    fn = new.creator
    if fn is None or not any(t is src for t in fn.__dict__.get("inputs", ())):
        return
    old = Tensor(src.data.copy(), requires_grad=src.requires_grad)
    old.creator, old.output_index, old.generation = src.creator, src.output_index, src.generation
    fn.inputs = tuple([old if t is src else t for t in fn.inputs])


def _binary(x: Tensor, other: Any, op: str, sym: str, fn: Callable, ufunc: str) -> Tensor:
    """``x <sym>= other`` in place: NumPy/CuPy's ``out=`` when nothing is recorded."""
    if not _records(x, op, other):
        xp = get_array_module(x.data)
        arr = other.data if isinstance(other, Tensor) else other
        try:
            if ufunc == "matmul":
                res = x.data @ arr
                if res.shape != x.data.shape:
                    raise ValueError(f"shape {tuple(res.shape)}")
                x.data[...] = res
            else:
                getattr(xp, ufunc)(x.data, arr, out=x.data, casting="same_kind")
        except TypeError:
            raise TypeError(f"{op}: the result ({np.result_type(x.data.dtype, _dtype(arr))}) "
                            f"cannot be stored in place in this {x.dtype} tensor; write "
                            f"x = x {sym} y") from None
        except ValueError:
            raise _shape_error(op, sym, x, arr) from None
        x._bump_version()
        return x
    src = _current(x)
    new = fn(src, src if other is x else other)
    _keep_old_values(new, src)
    if new.shape != x.shape:
        raise _shape_error(op, sym, x, other)
    if new.dtype != x.dtype:
        if x.dtype.kind != "f":
            raise TypeError(f"{op}: the result ({new.dtype}) cannot be stored in place in "
                            f"this {x.dtype} tensor; write x = x {sym} y")
        new = Cast(x.dtype)(new)
    _write_recorded(x, Ellipsis, new)
    return x


def _dtype(a: Any) -> Any:
    return a.dtype if hasattr(a, "dtype") else type(a)


def _shape_error(op: str, sym: str, x: Tensor, other: Any) -> RuntimeError:
    shape = tuple(getattr(other, "shape", ()))
    return RuntimeError(f"{op}: a value of shape {shape} does not broadcast to the shape "
                        f"{x.shape} of the tensor written to (an in-place op cannot change "
                        f"the tensor's shape); write x = x {sym} y")


# ---- the public in-place ops -----------------------------------------------------------------

def setitem(x: Tensor, index: Any, value: Any) -> None:
    """``x[index] = value``: basic, advanced and boolean indices; a scalar, array or Tensor
    value broadcast to ``x[index]``. Differentiable in ``x`` and ``value`` (see the module
    docstring). With a repeated advanced index the last write wins on the CPU, as in NumPy
    (on the GPU which one wins is undefined, as in torch), and each value gets the gradient
    at its position, as with torch's ``index_put_``."""
    index = _index_arrays(index)
    if _records(x, "setitem", value):
        v = value if isinstance(value, Tensor) else as_tensor(value, like=x)
        _write_recorded(x, index, v)
        return
    arr = value.data if isinstance(value, Tensor) else value
    try:
        x.data[index] = arr
    except (IndexError, ValueError) as e:
        raise type(e)(f"setitem: {e} (tensor shape {x.shape}, value shape "
                      f"{tuple(getattr(arr, 'shape', ()))})") from None
    x._bump_version()


def add_(x: Tensor, other: Any, alpha: float = 1) -> Tensor:
    """``x += alpha * other`` in place; returns x."""
    return _binary(x, other if alpha == 1 else other * alpha, "add_", "+", add, "add")


def sub_(x: Tensor, other: Any, alpha: float = 1) -> Tensor:
    """``x -= alpha * other`` in place; returns x."""
    return _binary(x, other if alpha == 1 else other * alpha, "sub_", "-", sub, "subtract")


def mul_(x: Tensor, other: Any) -> Tensor:
    """``x *= other`` in place; returns x."""
    return _binary(x, other, "mul_", "*", mul, "multiply")


def div_(x: Tensor, other: Any) -> Tensor:
    """``x /= other`` in place; returns x."""
    return _binary(x, other, "div_", "/", div, "true_divide")


def matmul_(x: Tensor, other: Any) -> Tensor:
    """``x @= other`` in place (other square, so the shape stays); returns x."""
    return _binary(x, other, "matmul_", "@", matmul, "matmul")


def pow_(x: Tensor, exponent: Any) -> Tensor:
    """``x **= exponent`` in place; returns x."""
    return _binary(x, exponent, "pow_", "**", pow, "power")


def _unary(op: str, fn: Callable[[Tensor], Tensor],
           compute: Callable[[Any, Any], Any]) -> Callable[[Tensor], Tensor]:
    """The in-place twin ``x.op_()`` of the elementwise ``fn``; ``compute(xp, a)`` writes
    ``fn(a)`` into ``a`` itself (NumPy/CuPy ``out=``) when nothing is recorded."""
    def method(x: Tensor) -> Tensor:
        if x.dtype.kind != "f":
            raise TypeError(f"{op}: this {x.dtype} tensor cannot hold the floating result in "
                            f"place; use the out-of-place {op[:-1]}() or .float() first")
        if not _records(x, op, None):
            compute(get_array_module(x.data), x.data)
            x._bump_version()
            return x
        src = _current(x)
        new = fn(src)
        _keep_old_values(new, src)
        _write_recorded(x, Ellipsis, new)
        return x
    method.__name__ = op
    method.__doc__ = f"``{op[:-1]}`` of every element, in place; returns x."
    return method


def _sigmoid_into(xp: Any, a: Any) -> None:
    a[...] = sigmoid(Tensor(a)).data  # minidl's overflow-free formula, then one copy


neg_ = _unary("neg_", neg, lambda xp, a: xp.negative(a, out=a))
abs_ = _unary("abs_", abs, lambda xp, a: xp.absolute(a, out=a))
exp_ = _unary("exp_", exp, lambda xp, a: xp.exp(a, out=a))
log_ = _unary("log_", log, lambda xp, a: xp.log(a, out=a))
sqrt_ = _unary("sqrt_", sqrt, lambda xp, a: xp.sqrt(a, out=a))
tanh_ = _unary("tanh_", tanh, lambda xp, a: xp.tanh(a, out=a))
relu_ = _unary("relu_", relu, lambda xp, a: xp.maximum(a, 0, out=a))
sigmoid_ = _unary("sigmoid_", sigmoid, _sigmoid_into)


def clamp_(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clamp every element into [min, max] in place; returns x."""
    if min is None and max is None:
        raise ValueError("clamp_: at least one of min= and max= must be given")
    lo, hi = (b.item() if isinstance(b, Tensor) else b for b in (min, max))
    if not _records(x, "clamp_", None):
        get_array_module(x.data).clip(x.data, lo, hi, out=x.data)
        x._bump_version()
        return x
    new = clip(_current(x), lo, hi)
    _write_recorded(x, Ellipsis, new)
    return x


def fill_(x: Tensor, value: Any) -> Tensor:
    """Set every element to ``value`` (a number or a one-element Tensor); returns x."""
    setitem(x, Ellipsis, value)
    return x


def zero_(x: Tensor) -> Tensor:
    """Set every element to 0; returns x."""
    setitem(x, Ellipsis, 0)
    return x


def copy_(x: Tensor, src: Any) -> Tensor:
    """Copy ``src`` (broadcast, cast to x's dtype, moved to x's device) into x; returns x."""
    if isinstance(src, Tensor) and src.device != x.device:
        src = src.to(x.device) if is_grad_enabled() and src.requires_grad \
            else Tensor(to_device(src.data, x.device))
    elif not isinstance(src, Tensor) and hasattr(src, "shape") and device_of(src) != x.device:
        src = to_device(src, x.device)
    setitem(x, Ellipsis, src)
    return x


def install_inplace_methods() -> None:
    """Attach ``x[i] = v``, ``+= -= *= /= @= **=`` and the ``_`` methods to Tensor."""
    T = Tensor
    T.__setitem__ = setitem
    T.__iadd__ = add_
    T.__isub__ = sub_
    T.__imul__ = mul_
    T.__itruediv__ = div_
    T.__imatmul__ = matmul_
    T.__ipow__ = pow_
    T.add_ = add_
    T.sub_ = sub_
    T.mul_ = mul_
    T.div_ = div_
    T.clamp_ = clamp_
    T.clip_ = clamp_
    T.fill_ = fill_
    T.zero_ = zero_
    T.copy_ = copy_
    T.pow_ = pow_
    for method in (neg_, abs_, exp_, log_, sqrt_, tanh_, relu_, sigmoid_):
        setattr(T, method.__name__, method)
