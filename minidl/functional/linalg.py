"""Matrix products: ``matmul`` (NumPy semantics), ``mm`` (2-D only), the fused ``linear`` layer
op, and vector/matrix ``norm``."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import parallel
from ..autograd import Function, Tensor, as_tensor
from .elementwise import _broadcast_error, _check_binary, abs, sqrt
from .reduction import Axis, amax, amin, sum, sum_to
from .shape import reshape, swapaxes
from .validation import keywords, resolve_dim, resolve_keepdim


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

    def fast_backward(self, gy):
        """The 2-D case of backward on the arrays: the same two products of the same views
        (the other cases reshape and sum, and run backward)."""
        a, b = self.inputs[0].data, self.inputs[1].data
        if a.ndim != 2 or b.ndim != 2:
            return NotImplemented
        need = self.needs_input_grad
        return (parallel.matmul(gy, b.transpose(1, 0)) if need[0] else None,
                parallel.matmul(a.transpose(1, 0), gy) if need[1] else None)


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
            rows = math.prod(x.shape[:-1])  # not -1: ambiguous for 0 features (Linear(0, 3))
            y = parallel.matmul(x.reshape(rows, x.shape[-1]), w.T).reshape(*x.shape[:-1],
                                                                            w.shape[0])
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
            rows = math.prod(gy.shape[:-1])   # not -1: ambiguous for 0 features
            g2 = reshape(gy, (rows, gy.shape[-1]))
            gw = matmul(swapaxes(g2, 0, 1), reshape(x, (rows, x.shape[-1])))
        if len(self.input_shapes) > 2 and self.needs_input_grad[2]:
            gb = sum_to(gy, self.input_shapes[2])
        return (gx, gw, gb) if len(self.input_shapes) > 2 else (gx, gw)


# ---- wrappers -----------------------------------------------------------------------------

def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy semantics (1-D operands, broadcast batch dims)."""
    return MatMul()(a, b)


@keywords
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``: x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


def mm(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product of two 2-D tensors, (n, m) @ (m, p) -> (n, p), as ``torch.mm``
    (no broadcasting; :func:`matmul` has NumPy's rules)."""
    a, b = as_tensor(a), as_tensor(b, like=as_tensor(a))
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm: expected two 2-D tensors, got shapes {a.shape} and {b.shape}; "
                         "use matmul (or @) for batched or 1-D operands")
    return MatMul()(a, b)


@keywords
def norm(x: Tensor, p: float | str = 2, dim: Axis = None, keepdim: bool = False, *,
         axis: Axis = None, keepdims: bool | None = None) -> Tensor:
    """The p-norm over ``dim`` (all elements when None: the vector or Frobenius norm).

    ``p`` is a number > 0, ``inf`` / ``-inf`` (max / min of ``|x|``) or ``'fro'`` (= 2).
    The gradient of the 2-norm at 0 is nan (0/0), as the formula gives.
    """
    dim, keep = resolve_dim("norm", dim, axis), resolve_keepdim("norm", keepdim, keepdims)
    x = as_tensor(x)
    if p == "fro":
        p = 2
    if isinstance(p, (str, bool)) or not isinstance(p, (int, float, np.number)):
        raise ValueError(f"norm: p must be a positive number, inf, -inf or 'fro', got {p!r}")
    if p == float("inf"):
        return amax(abs(x), dim, keep)
    if p == float("-inf"):
        return amin(abs(x), dim, keep)
    if not p > 0:
        raise ValueError(f"norm: p must be a positive number, inf, -inf or 'fro', got {p!r}")
    if p == 1:
        return sum(abs(x), dim, keep)
    if p == 2:
        return sqrt(sum(x * x, dim, keep))
    return sum(abs(x) ** p, dim, keep) ** (1.0 / p)
