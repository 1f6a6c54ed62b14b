"""Keras's image layers: Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D.

Images are channels-last (N, H, W, C) by default, as in Keras
(``keras.config.set_image_data_format('channels_first')`` or ``data_format=`` switches to
(N, C, H, W)). minidl's convolution and pooling kernels work on (N, C, H, W), so a
channels-last layer transposes its input to (N, C, H, W), runs the kernel, and transposes the
result back: two whole-array transposes per layer, no per-pixel loops. Keras's 'same' padding
(``ceil(size / stride)`` outputs; an odd total padding puts the extra row/column at the
bottom/right) is done by the kernel's own padding when it is symmetric, by an explicit pad
otherwise.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import Tensor, no_grad
from ...backend import get_array_module
from ...functional.validation import positive_int, to_pair
from ..config import data_format_of
from .base import KernelLayer, Layer

__all__ = ["Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D"]


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
               dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """Keras's 'same' padding (top, bottom, left, right)."""
    pads = []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]


def _to_nchw(x: Tensor, data_format: str) -> Tensor:
    return F.permute(x, 0, 3, 1, 2) if data_format == "channels_last" else x


def _from_nchw(y: Tensor, data_format: str) -> Tensor:
    return F.permute(y, 0, 2, 3, 1) if data_format == "channels_last" else y


def _check_4d(layer: Layer, x: Tensor) -> None:
    if x.ndim != 4:
        layout = "(N, H, W, C)" if layer.data_format == "channels_last" else "(N, C, H, W)"
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: expected 4-D images "
                         f"{layout} ({layer.data_format}), got shape {tuple(x.shape)}")


def _padding(value: str, owner: str) -> str:
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f"{owner}: padding must be 'valid' or 'same', got {value!r}")
    return value.lower()


class Conv2D(KernelLayer):
    """Keras's 2-D convolution: ``activation(conv(x, kernel) + bias)``.

    x (N, H, W, C) channels-last (or (N, C, H, W)) -> (N, Ho, Wo, filters). ``padding``
    'valid' or 'same'; ``strides``, ``dilation_rate``, ``groups`` as in Keras. The minidl
    weight is (filters, C/groups, kh, kw); ``get_weights()``, initializers, regularizers and
    constraints see Keras's kernel (kh, kw, C/groups, filters). Default initializers:
    'glorot_uniform' kernel, 'zeros' bias.
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = (1, 1), groups: int = 1, activation: Any = None,
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, activity_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keep_weight_options(activation, use_bias, kernel_initializer, bias_initializer,
                                  kernel_regularizer, bias_regularizer, activity_regularizer,
                                  kernel_constraint, bias_constraint)
        op = "Conv2D"
        self.filters = positive_int(filters, "filters", op)
        self.kernel_size = to_pair(kernel_size, "kernel_size", op)
        self.strides = to_pair(strides, "strides", op)
        self.dilation_rate = to_pair(dilation_rate, "dilation_rate", op)
        self.groups = positive_int(groups, "groups", op)
        self.padding = _padding(padding, op)
        self.data_format = data_format_of(data_format, op)
        self.in_channels: int | None = None

    @staticmethod
    def to_keras(w: Any) -> Any:
        """(filters, in, kh, kw) -> Keras's (kh, kw, in, filters)."""
        return w.transpose(2, 3, 1, 0)

    @staticmethod
    def from_keras(w: Any) -> Any:
        """(kh, kw, in, filters) -> minidl's (filters, in, kh, kw)."""
        return w.transpose(3, 2, 0, 1)

    def build(self, input_shape: tuple[int, ...], dtype: Any, device: str) -> None:
        if len(input_shape) != 4:
            raise ValueError(f"Conv2D {self.name!r}: expected 4-D images, got shape "
                             f"{input_shape}")
        c = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        if c % self.groups or self.filters % self.groups:
            raise ValueError(f"Conv2D {self.name!r}: input channels ({c}) and filters "
                             f"({self.filters}) must be divisible by groups ({self.groups})")
        self.in_channels = int(c)
        kh, kw = self.kernel_size
        self._build_weights((kh, kw, c // self.groups, self.filters), dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        _check_4d(self, x)
        self._maybe_build(x)
        xc = _to_nchw(x, self.data_format)
        pad: Any = 0
        if self.padding == "same":
            t, b, left, r = _same_pads(tuple(xc.shape[2:]), self.kernel_size, self.strides,
                                       self.dilation_rate)
            if (t, left) == (b, r):
                pad = (t, left)
            else:
                xc = F.pad(xc, (left, r, t, b))
        y = F.conv2d(xc, self.weight, self.bias, self.strides, pad, self.dilation_rate,
                     self.groups)
        y = _from_nchw(y, self.data_format)
        return y if self.activation is None else self.activation(y)

    def macs(self, inputs: tuple, output: Tensor) -> int:
        return int(output.size) * int(np.prod(self.weight.shape[1:]))

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.filters}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, padding={self.padding!r}, "
                f"data_format={self.data_format!r}, name={self.name!r}")


class _Pooling2D(Layer):
    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        op = type(self).__name__
        self.pool_size = to_pair(pool_size, "pool_size", op)
        self.strides = self.pool_size if strides is None else to_pair(strides, "strides", op)
        self.padding = _padding(padding, op)
        self.data_format = data_format_of(data_format, op)

    def _pool(self, x: Tensor, pads: tuple[int, int, int, int]) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        _check_4d(self, x)
        xc = _to_nchw(x, self.data_format)
        pads = (_same_pads(tuple(xc.shape[2:]), self.pool_size, self.strides)
                if self.padding == "same" else (0, 0, 0, 0))
        return _from_nchw(self._pool(xc, pads), self.data_format)

    def extra_repr(self) -> str:
        return (f"pool_size={self.pool_size}, strides={self.strides}, padding={self.padding!r}, "
                f"name={self.name!r}")


class MaxPooling2D(_Pooling2D):
    """Keras's max pooling (default 2x2, strides = pool_size); 'same' padding never wins."""

    def _pool(self, x: Tensor, pads: tuple[int, int, int, int]) -> Tensor:
        if any(pads):
            t, b, left, r = pads
            x = F.pad(x, (left, r, t, b), value=-np.inf)
        return F.max_pool2d(x, self.pool_size, self.strides)


class AveragePooling2D(_Pooling2D):
    """Keras's average pooling; with 'same' padding each window averages its real elements
    only, as in Keras."""

    def _pool(self, x: Tensor, pads: tuple[int, int, int, int]) -> Tensor:
        if not any(pads):
            return F.avg_pool2d(x, self.pool_size, self.strides)
        t, b, left, r = pads
        y = F.avg_pool2d(F.pad(x, (left, r, t, b)), self.pool_size, self.strides)
        xp = get_array_module(x.data)
        with no_grad():
            ones = Tensor(xp.ones((1, 1, *x.shape[2:]), dtype=x.dtype))
            frac = F.avg_pool2d(F.pad(ones, (left, r, t, b)), self.pool_size, self.strides)
        return y * (1.0 / frac.data)


class GlobalAveragePooling2D(Layer):
    """Mean over the spatial axes: (N, H, W, C) -> (N, C) (``keepdims``: (N, 1, 1, C))."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = data_format_of(data_format, type(self).__name__)
        self.keepdims = keepdims

    def _axes(self) -> tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def forward(self, x: Tensor) -> Tensor:
        _check_4d(self, x)
        return F.mean(x, axis=self._axes(), keepdims=self.keepdims)


class GlobalMaxPooling2D(GlobalAveragePooling2D):
    """Maximum over the spatial axes: (N, H, W, C) -> (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        _check_4d(self, x)
        return F.max(x, axis=self._axes(), keepdims=self.keepdims)
