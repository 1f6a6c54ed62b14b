"""Activation functions: ReLU and friends, the squashing sigmoid/tanh, softmax, log_softmax and
logsumexp.

ReLU, sigmoid and tanh run large NumPy arrays, forward and ``fast_backward``, block by block
on the worker threads (:func:`minidl.parallel.elementwise`): the same ufuncs in the same
order as the whole-array expression, so the same bits, with temporaries that stay in the
cache. The block functions below see NumPy arrays only (``blocked`` is False for CuPy).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor, as_tensor
from ..backend import get_array_module
from ..parallel import blocked, elementwise, get_num_threads
from .elementwise import clip, exp, log, where
from .reduction import Axis, _keepdims_shape, _norm_axis, sum
from .shape import reshape
from .validation import keywords, resolve_dim, resolve_keepdim


def _relu(x: np.ndarray, y: np.ndarray) -> None:
    np.maximum(x, 0, out=y)


def _relu_mask(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
    np.maximum(x, 0, out=y)
    np.greater(x, 0, out=mask)


def _masked(gy: np.ndarray, mask: np.ndarray, g: np.ndarray) -> None:
    """g = gy * mask.astype(gy.dtype): ReLU's backward."""
    np.multiply(gy, mask.astype(gy.dtype), out=g)


def masked_grad(gy: Any, mask: Any) -> Any:
    """``gy * mask.astype(gy.dtype)`` on arrays (the backward of a ReLU with its mask), in
    blocks when large; gy and mask of one shape."""
    if blocked(gy):
        return elementwise(_masked, (gy.dtype,), gy, mask)[0]
    return gy * mask.astype(gy.dtype)


class ReLU(Function):
    def forward(self, x):
        if blocked(x) and x.dtype.kind == "f":   # (maximum of bools and 0 is int64)
            if self.needs_input_grad[0]:
                y, self.mask = elementwise(_relu_mask, (x.dtype, bool), x)
                return y
            if get_num_threads() > 1:      # one ufunc: blocks pay only on threads (Tanh)
                return elementwise(_relu, (x.dtype,), x)[0]
        y = get_array_module(x).maximum(x, 0)
        if self.needs_input_grad[0]:
            self.mask = x > 0
        return y

    def backward(self, gy):
        return gy * Tensor(self.mask.astype(gy.dtype))

    def fast_backward(self, gy):  # the same arithmetic as backward, on the arrays
        return (masked_grad(gy, self.mask),)


class LeakyReLU(Function):
    def __init__(self, negative_slope: float) -> None:
        self.slope = negative_slope

    def forward(self, x):
        xp = get_array_module(x)
        positive = x > 0
        if self.needs_input_grad[0]:
            self.scale = xp.where(positive, 1, self.slope).astype(x.dtype)
        return xp.where(positive, x, x * self.slope)

    def backward(self, gy):
        return gy * Tensor(self.scale)


class ELU(Function):
    keep_inputs = (0,)

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def forward(self, x):
        xp = get_array_module(x)
        return xp.where(x > 0, x, self.alpha * (xp.exp(xp.minimum(x, 0)) - 1)).astype(x.dtype)

    def backward(self, gy):
        x = self.inputs[0]
        # alpha*e^x for x <= 0, written with ops so that it differentiates again
        return gy * where(x.data > 0, 1.0, exp(clip(x, max=0.0)) * self.alpha)


def _sigmoid(x: np.ndarray, y: np.ndarray) -> None:
    """Sigmoid.forward's expression on a float block, step by step."""
    num = np.minimum(x, 0)
    np.exp(num, out=num)
    den = np.abs(x)
    np.negative(den, out=den)
    np.exp(den, out=den)
    np.add(1, den, out=den)
    np.divide(num, den, out=y)


def _sigmoid_grad(gy: np.ndarray, y: np.ndarray, g: np.ndarray) -> None:
    """g = gy * y * (1 - y)."""
    np.multiply(gy, y, out=g)
    np.multiply(g, np.subtract(1, y), out=g)


def _tanh_grad(gy: np.ndarray, y: np.ndarray, g: np.ndarray) -> None:
    """g = gy * (1 - y * y)."""
    t = np.multiply(y, y)
    np.subtract(1, t, out=t)
    np.multiply(gy, t, out=g)


class Sigmoid(Function):
    keep_output = True

    def forward(self, x):
        if blocked(x) and x.dtype.kind == "f":
            return elementwise(_sigmoid, (x.dtype,), x)[0]
        xp = get_array_module(x)
        # e^min(x,0) / (1 + e^-|x|) is 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) for x < 0:
        # neither exp overflows, and the negative tail keeps full relative precision, where
        # 0.5*(1+tanh(x/2)) rounds to exactly 0 (sigmoid(-50) is 1.9e-22, not 0; plots of
        # vanishing gradients depend on it)
        return (xp.exp(xp.minimum(x, 0)) / (1 + xp.exp(-xp.abs(x)))).astype(x.dtype, copy=False)

    def backward(self, gy):
        y = self.output()
        return gy * y * (1 - y)

    def fast_backward(self, gy):  # gy and y have one shape: no promotion rule applies
        y = self._outputs[0]
        if blocked(gy):
            return (elementwise(_sigmoid_grad, (np.result_type(gy, y),), gy, y)[0],)
        return (gy * y * (1 - y),)


class Tanh(Function):
    keep_output = True

    def forward(self, x):
        # one ufunc has no temporaries to keep in the cache: blocks pay only on threads
        if blocked(x) and x.dtype.kind == "f" and get_num_threads() > 1:
            return elementwise(np.tanh, (x.dtype,), x)[0]
        return get_array_module(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1 - y * y)

    def fast_backward(self, gy):  # gy and y have one shape: no promotion rule applies
        y = self._outputs[0]
        if blocked(gy):
            return (elementwise(_tanh_grad, (np.result_type(gy, y),), gy, y)[0],)
        return (gy * (1 - y * y),)


class Softmax(Function):
    keep_output = True

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        e /= e.sum(axis=self.axis, keepdims=True)
        return e

    def backward(self, gy):
        y = self.output()
        gyy = gy * y
        return gyy - y * sum(gyy, axis=self.axis, keepdims=True)


class LogSoftmax(Function):
    keep_output = True

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, gy):
        y = self.output()
        return gy - exp(y) * sum(gy, axis=self.axis, keepdims=True)


# ``inplace=`` is accepted so torch code (``nn.ReLU(inplace=True)``) runs: minidl computes out
# of place, which gives the same values and gradients; only the input is not overwritten.

@keywords
def relu(x: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0) elementwise; the gradient at 0 is 0. ``inplace`` is accepted (see above)."""
    return ReLU()(x)


@keywords
def leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, ``negative_slope * x`` otherwise."""
    return LeakyReLU(negative_slope)(x)


@keywords
def elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""
    return ELU(alpha)(x)


@keywords
def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), computed without overflow; its derivative is at most 1/4."""
    return Sigmoid()(x)


@keywords
def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent; derivative 1 - tanh(x)^2."""
    return Tanh()(x)


def _softmax_dim(op: str, x: Any, dim: int | None, axis: int | None) -> int:
    """torch's ``dim`` or NumPy's ``axis`` as a checked int; the last dim when neither."""
    d = resolve_dim(op, dim, axis)
    if d is None:
        return -1
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"{op}: dim must be an int, got {d!r}")
    _norm_axis(d, as_tensor(x).ndim, op)
    return d


@keywords
def softmax(x: Tensor, dim: int | None = None, *, axis: int | None = None,
            dtype: Any = None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim`` (``axis=`` is NumPy's name), shifted by the max for
    stability; any shape -> same shape. Without ``dim`` the last dim is used (torch would
    guess one and warn). ``dtype`` casts the input first, as in torch."""
    x = as_tensor(x) if dtype is None else as_tensor(x).astype(dtype)
    return Softmax(_softmax_dim("softmax", x, dim, axis))(x)


@keywords
def log_softmax(x: Tensor, dim: int | None = None, *, axis: int | None = None,
                dtype: Any = None) -> Tensor:
    """log(softmax(x)) along ``dim`` (default last), computed stably (log-sum-exp)."""
    x = as_tensor(x) if dtype is None else as_tensor(x).astype(dtype)
    return LogSoftmax(_softmax_dim("log_softmax", x, dim, axis))(x)


@keywords
def logsumexp(x: Tensor, dim: Axis = None, keepdim: bool = False, *, axis: Axis = None,
              keepdims: bool | None = None) -> Tensor:
    """log(sum(exp(x))) over ``dim`` (all dims when None), without overflow: the max is
    subtracted first (as a constant, so the gradient is exactly softmax(x))."""
    x = as_tensor(x)
    dim, keep = resolve_dim("logsumexp", dim, axis), resolve_keepdim("logsumexp", keepdim,
                                                                      keepdims)
    axes = _norm_axis(dim, x.ndim, "logsumexp")
    xp = get_array_module(x.data)
    if x.size == 0:
        m = xp.zeros(_keepdims_shape(x.shape, axes), dtype=x.dtype)
    else:
        m = x.data.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # an all -inf row: log(0) = -inf, not nan
    shift = Tensor(m)
    out = log(sum(exp(x - shift), axes, keepdim=True)) + shift
    return out if keep else reshape(out, tuple(n for i, n in enumerate(x.shape)
                                               if i not in axes))
