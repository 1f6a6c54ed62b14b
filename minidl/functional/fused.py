"""Fused Functions for layer patterns that repeat: batch norm + ReLU, residual add + ReLU.

Each is an ordinary Function (forward on raw arrays, backward with minidl ops, so
``create_graph=True`` works) that computes exactly what its unfused composition computes,
bit for bit: the same elementwise operations on the same numbers, with the ReLU applied in
place on the first op's output (batch norm: block by block while it is in the cache) and
one graph node instead of two. What that saves is an activation-sized array and a pass
over memory or two per use (benchmarks/bench_fused.py); the ResNet blocks of
minidl.models use them (benchmarks/profile_step.py shows where a step's time goes).
AddReLU runs large NumPy arrays block by block on the worker threads, forward and
``fast_backward`` (:func:`minidl.parallel.elementwise`, the same bits).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..parallel import blocked, elementwise
from .activation import masked_grad, relu
from .normalization import BatchNorm, BatchNormGrad, _train_step, batch_norm


def _relu_in_place(fn: Function, y: Any) -> Any:
    """max(y, 0) written into y; keeps the mask y > 0 when a gradient is needed."""
    get_array_module(y).maximum(y, 0, out=y)
    if any(fn.needs_input_grad):
        fn.mask = y > 0
    return y


class BatchNormReLU(BatchNorm):
    """relu(batch_norm(x)) in training mode: x (N, C, ...), gamma, beta (C,) -> shape of x.

    The ReLU runs on each block of batch norm's output while it is in the cache, and its
    backward (the mask) inside BatchNormGrad's first pass.
    """

    relu = True

    def forward(self, x, gamma, beta):
        y = super().forward(x, gamma, beta)
        if any(self.needs_input_grad):
            self.mask = y > 0
        return y

    def backward(self, gy):
        x, gamma = self.inputs[0], self.inputs[1]
        return BatchNormGrad(self.mean, self.inv_std, self.eps, self.mask)(x, gamma, gy)


def _add_relu(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> None:
    np.add(a, b, out=y)
    np.maximum(y, 0, out=y)


def _add_relu_mask(a: np.ndarray, b: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
    _add_relu(a, b, y)
    np.greater(y, 0, out=mask)


class AddReLU(Function):
    """relu(a + b) for a, b of one shape and dtype -> that shape."""

    def forward(self, a, b):
        if blocked(a):
            if any(self.needs_input_grad):
                y, self.mask = elementwise(_add_relu_mask, (a.dtype, bool), a, b)
                return y
            return elementwise(_add_relu, (a.dtype,), a, b)[0]
        return _relu_in_place(self, a + b)

    def backward(self, gy):
        g = gy * Tensor(self.mask.astype(gy.dtype))
        need = self.needs_input_grad
        return (g if need[0] else None), (g if need[1] else None)

    def fast_backward(self, gy):  # the same arithmetic as backward, on the arrays
        g = masked_grad(gy, self.mask)
        need = self.needs_input_grad
        return (g if need[0] else None), (g if need[1] else None)


def batch_norm_relu(x: Tensor, running_mean: Tensor | Any | None,
                    running_var: Tensor | Any | None, weight: Tensor | None = None,
                    bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
                    eps: float = 1e-5) -> Tensor:
    """``relu(batch_norm(x, ...))`` with :func:`~minidl.functional.batch_norm`'s arguments.

    x (N, C, ...) -> same shape. Training mode runs one fused node (bitwise equal to the
    two-op composition) and updates the running statistics as batch_norm does; eval mode
    is the composition itself.
    """
    if not training or x.ndim < 2 or x.size // max(x.shape[1], 1) <= 1 or \
            any(v is not None and tuple(v.shape) != (x.shape[1],)
                for v in (running_mean, running_var, weight, bias)):
        # eval mode, and every input batch_norm rejects (with its own message)
        return relu(batch_norm(x, running_mean, running_var, weight, bias, training,
                               momentum, eps))
    return _train_step(BatchNormReLU(eps), x, running_mean, running_var, weight, bias,
                       momentum)


def add_relu(a: Tensor, b: Tensor) -> Tensor:
    """``relu(a + b)``, the end of a residual block: one fused node when a and b have one
    shape and dtype (bitwise equal to the composition), the composition otherwise."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape \
            or a.dtype != b.dtype or a.dtype.kind != "f":
        return relu(a + b)
    return AddReLU()(a, b)
