"""Keras's BatchNormalization and Normalization (with ``adapt``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import Tensor
from ...backend import get_array_module, to_device, to_numpy
from ...functional.normalization import BatchNorm
from .. import initializers
from ..config import epsilon
from .base import Layer

__all__ = ["BatchNormalization", "Normalization"]


class BatchNormalization(Layer):
    """Keras's batch normalisation over every axis but ``axis`` (default -1: the features, or
    the channels of channels-last images).

    Keras's meanings: ``momentum=0.99`` is the weight of the *old* moving statistics
    (``moving = 0.99 * moving + 0.01 * batch``; torch's momentum would be 0.01), the moving
    variance takes the biased batch variance, ``epsilon=1e-3``. Weights in Keras's order:
    gamma, beta (trainable), moving_mean, moving_variance. A layer with ``trainable=False``
    runs in inference mode (moving statistics) even inside ``fit``, as in Keras, which is
    what fine-tuning needs. For channels-last images the (N, H, W, C) batch is viewed as
    (N*H*W, C) rows -- a reshape, no transpose -- and normalised by minidl's fused kernel.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got {momentum}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = center, scale
        self._inits = [initializers.get(i) for i in (gamma_initializer, beta_initializer,
                                                     moving_mean_initializer,
                                                     moving_variance_initializer)]
        self._regs = (gamma_regularizer, beta_regularizer)
        self._constraints = (gamma_constraint, beta_constraint)

    def build(self, input_shape: tuple[int, ...], dtype: Any, device: str) -> None:
        c = int(input_shape[self.axis])
        g, b, mm, mv = (np.asarray(i((c,), dtype), dtype=dtype) for i in self._inits)
        if self.scale:
            self.gamma = self._param(g, device)
            self.gamma.regularizer, self.gamma.constraint = self._regs[0], self._constraints[0]
        if self.center:
            self.beta = self._param(b, device)
            self.beta.regularizer, self.beta.constraint = self._regs[1], self._constraints[1]
        self.register_buffer("moving_mean", Tensor(to_device(mm, device)))
        self.register_buffer("moving_variance", Tensor(to_device(mv, device)))
        self.channels = c

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        self._maybe_build(x)
        ax = self.axis % x.ndim
        if x.shape[ax] != self.channels:
            raise ValueError(f"BatchNormalization {self.name!r}: expected {self.channels} "
                             f"features along axis {self.axis}, got shape {tuple(x.shape)}")
        # (N, C, ...) as minidl's kernel wants it: rows of C for the last axis, else axis 1
        if ax == x.ndim - 1:
            xc = F.reshape(x, (-1, self.channels))
        elif ax == 1:
            xc = x
        else:
            raise ValueError(f"BatchNormalization {self.name!r}: axis must be 1 or -1 in "
                             f"minidl, got {self.axis} for an input of shape {tuple(x.shape)}")
        active = self.training if training is None else training
        gamma = getattr(self, "gamma", None)
        beta = getattr(self, "beta", None)
        if active and self.trainable:
            xp = get_array_module(xc.data)
            fn = BatchNorm(self.epsilon)
            g = gamma if gamma is not None else xp.ones(self.channels, xc.dtype)
            b = beta if beta is not None else xp.zeros(self.channels, xc.dtype)
            y = fn(xc, g, b)
            m = self.momentum
            for buf, stat in ((self.moving_mean, fn.mean), (self.moving_variance, fn.var)):
                buf.data *= m
                buf.data += (1.0 - m) * stat.astype(buf.dtype, copy=False)
        else:
            y = F.batch_norm(xc, self.moving_mean, self.moving_variance, gamma, beta,
                             training=False, eps=self.epsilon)
        return F.reshape(y, x.shape) if y.shape != x.shape else y

    def extra_repr(self) -> str:
        return (f"axis={self.axis}, momentum={self.momentum}, epsilon={self.epsilon}, "
                f"name={self.name!r}")


class Normalization(Layer):
    """Keras's feature normalisation: ``(x - mean) / max(sqrt(variance), epsilon)``.

    ``mean`` / ``variance`` are given, or computed by ``adapt(data)`` over every axis but
    ``axis`` (default -1: one mean and variance per feature). ``invert=True`` undoes the
    normalisation. The statistics are non-trainable weights (buffers): saved by
    ``save_weights``, listed by ``get_weights``.
    """

    def __init__(self, axis: int | None = -1, mean: Any = None, variance: Any = None,
                 invert: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: pass both mean and variance, or neither (and "
                             "call adapt)")
        self.axis, self.invert = axis, invert
        self._given = None if mean is None else (np.asarray(mean), np.asarray(variance))

    def _stat_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.axis is None:
            return (1,) * (len(shape) - 1)
        ax = self.axis % len(shape)
        return tuple(s if i == ax else 1 for i, s in enumerate(shape))[1:]

    def adapt(self, data: Any) -> None:
        """Compute the mean and variance of ``data`` (N, ...) (an array or a Tensor)."""
        a = np.asarray(to_numpy(data.data if isinstance(data, Tensor) else data),
                       dtype=np.float64)
        if a.ndim < 1 or a.shape[0] == 0:
            raise ValueError(f"Normalization.adapt: expected data (N, ...), got shape {a.shape}")
        axes = tuple(range(a.ndim)) if self.axis is None else tuple(
            i for i in range(a.ndim) if i != self.axis % a.ndim)
        self._set(a.mean(axis=axes, keepdims=True)[0], a.var(axis=axes, keepdims=True)[0],
                  a.shape, np.float32)

    def _set(self, mean: np.ndarray, var: np.ndarray, shape: tuple[int, ...], dtype: Any,
             device: str | None = None) -> None:
        want = self._stat_shape(shape)
        mean = np.broadcast_to(np.asarray(mean, dtype=dtype), want)
        var = np.broadcast_to(np.asarray(var, dtype=dtype), want)
        if "mean" in self._buffers:
            dev = self.mean.device
            self.mean.data = to_device(np.ascontiguousarray(mean), dev)
            self.variance.data = to_device(np.ascontiguousarray(var), dev)
        else:
            dev = device or "cpu"
            self.register_buffer("mean", Tensor(to_device(np.ascontiguousarray(mean), dev)))
            self.register_buffer("variance", Tensor(to_device(np.ascontiguousarray(var), dev)))
        self.built = True

    def build(self, input_shape: tuple[int, ...], dtype: Any, device: str) -> None:
        if self._given is None:
            raise ValueError(f"Normalization {self.name!r}: call adapt(data) first, or pass "
                             f"mean= and variance=")
        self._set(*self._given, input_shape, dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        self._maybe_build(x)
        mean = self.mean.data.astype(x.dtype, copy=False)
        std = get_array_module(mean).maximum(
            get_array_module(mean).sqrt(self.variance.data.astype(x.dtype, copy=False)),
            epsilon())
        if self.invert:
            return x * std + mean
        return (x - mean) / std
