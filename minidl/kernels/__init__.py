"""Raw-array kernels for convolution and pooling: the ONE place that picks NumPy or CuPy.

Every function takes and returns backend arrays (no Tensors, no autograd) with NCHW shapes;
the differentiable ops in :mod:`minidl.functional` are built on them. Which implementation
runs is decided here, by the array module of the first array argument:

* :mod:`minidl.kernels._numpy` - channels-last im2col with stride tricks and cache-blocked
  BLAS GEMMs;
* :mod:`minidl.kernels._cupy` - ``cupy.ElementwiseKernel`` kernels compiled once, and cuBLAS.

Both compute the functions of :mod:`minidl.kernels.reference`, the few readable lines of
NumPy (im2col, col2im, a naive conv2d) that define them and that the tests compare them with;
read that module first.

Padding is always four numbers ``(top, bottom, left, right)``; strides, dilations and kernel
sizes are pairs. CPU outputs have NCHW shapes but are stored channels-last (not
C-contiguous); treat them as ordinary arrays.

    >>> import numpy as np
    >>> from minidl import kernels
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> kernels.im2col(x, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)).reshape(4, 4)
    array([[ 0.,  1.,  4.,  5.],
           [ 2.,  3.,  6.,  7.],
           [ 8.,  9., 12., 13.],
           [10., 11., 14., 15.]])
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_array_module
from . import _numpy
from ._numpy import Pads, out_size

__all__ = ["Pads", "avg_pool2d_backward", "avg_pool2d_forward", "col2im", "conv2d_forward",
           "conv2d_grad_input", "conv2d_grad_weight", "im2col", "implementation",
           "max_pool2d_backward", "max_pool2d_forward", "max_pool2d_gather", "max_pool2d_indices",
           "out_size"]


def implementation(*arrays: Any) -> ModuleType:
    """The kernel module (``_numpy`` or ``_cupy``) for the arrays' backend."""
    if get_array_module(*arrays) is np:
        return _numpy
    from . import _cupy  # noqa: PLC0415 - imported only when a GPU array shows up

    return _cupy


Pair = tuple[int, int]


def im2col(x: Any, kernel: Pair, stride: Pair, pads: Pads, dilation: Pair) -> Any:
    """Columns of x (N, C, H, W) -> (N, Ho, Wo, kh, kw, C).

    Row (n, ho, wo) of ``cols.reshape(N*Ho*Wo, kh*kw*C)`` is the window that output pixel
    sees (zeros where it hangs over the padding).
    """
    return implementation(x).im2col(x, kernel, stride, pads, dilation)


def col2im(cols: Any, in_hw: Pair, stride: Pair, pads: Pads, dilation: Pair) -> Any:
    """Adjoint of :func:`im2col`: add columns (N, Ho, Wo, kh, kw, C) back into (N, C, H, W)."""
    return implementation(cols).col2im(cols, in_hw, stride, pads, dilation)


def conv2d_forward(x: Any, w: Any, b: Any, stride: Pair, pads: Pads, dilation: Pair,
                   groups: int) -> Any:
    """Cross-correlation: x (N, C, H, W), w (K, C/groups, kh, kw), b (K,) or None
    -> (N, K, Ho, Wo)."""
    return implementation(x, w).conv2d_forward(x, w, b, stride, pads, dilation, groups)


def conv2d_grad_input(gy: Any, w: Any, in_hw: Pair, stride: Pair, pads: Pads, dilation: Pair,
                      groups: int) -> Any:
    """Gradient of conv2d w.r.t. its input (= transposed convolution of gy):
    gy (N, K, Ho, Wo), w (K, C/groups, kh, kw) -> (N, C, *in_hw)."""
    return implementation(gy, w).conv2d_grad_input(gy, w, in_hw, stride, pads, dilation,
                                                   groups)


def conv2d_grad_weight(x: Any, gy: Any, kernel: Pair, stride: Pair, pads: Pads,
                       dilation: Pair, groups: int) -> Any:
    """Gradient of conv2d w.r.t. its weight: x (N, C, H, W), gy (N, K, Ho, Wo)
    -> (K, C/groups, kh, kw)."""
    return implementation(x, gy).conv2d_grad_weight(x, gy, kernel, stride, pads, dilation,
                                                    groups)


def max_pool2d_forward(x: Any, kernel: Pair, stride: Pair, pads: Pads, out_hw: Pair,
                       dilation: Pair = (1, 1)) -> tuple[Any, Any]:
    """Window maxima of x (N, C, H, W) -> (y (N, C, Ho, Wo), argmax offsets).

    Window (ho, wo) reads rows ``ho*sh - pad_top + i*dh`` and columns ``wo*sw - pad_left +
    j*dw``. The offsets (backend-specific layout; pass them back unchanged) are ``i*kw + j``
    of the winner in its window; ties go to the first maximum in row-major order. ``pads``
    may include the extra bottom/right rows of ceil_mode; padding never wins.
    """
    return implementation(x).max_pool2d_forward(x, kernel, stride, pads, out_hw, dilation)


def max_pool2d_backward(gy: Any, idx: Any, in_hw: Pair, kernel: Pair, stride: Pair,
                        pads: Pads, dilation: Pair = (1, 1)) -> Any:
    """Send gy (N, C, Ho, Wo) to the saved argmax positions -> (N, C, *in_hw)."""
    return implementation(gy).max_pool2d_backward(gy, idx, in_hw, kernel, stride, pads,
                                                  dilation)


def max_pool2d_gather(x: Any, idx: Any, kernel: Pair, stride: Pair, pads: Pads,
                      dilation: Pair = (1, 1)) -> Any:
    """Adjoint of :func:`max_pool2d_backward`: x (N, C, H, W) at the saved argmax positions."""
    return implementation(x).max_pool2d_gather(x, idx, kernel, stride, pads, dilation)


def max_pool2d_indices(idx: Any, in_hw: Pair, kernel: Pair, stride: Pair, pads: Pads,
                       dilation: Pair = (1, 1)) -> Any:
    """The saved argmax offsets as torch's ``return_indices``: int64 (N, C, Ho, Wo) flat
    positions ``h*W + w`` of each window's maximum in its (H, W) input plane."""
    return implementation(idx).max_pool2d_indices(idx, in_hw, kernel, stride, pads, dilation)


def avg_pool2d_forward(x: Any, kernel: Pair, stride: Pair, pads: Pads, out_hw: Pair,
                       inv_div: Any) -> Any:
    """Window sums of x (N, C, H, W) (zero padding) times ``inv_div`` (Ho, Wo)."""
    return implementation(x).avg_pool2d_forward(x, kernel, stride, pads, out_hw, inv_div)


def avg_pool2d_backward(gy: Any, in_hw: Pair, kernel: Pair, stride: Pair, pads: Pads,
                        inv_div: Any) -> Any:
    """Adjoint of :func:`avg_pool2d_forward` -> (N, C, *in_hw)."""
    return implementation(gy).avg_pool2d_backward(gy, in_hw, kernel, stride, pads, inv_div)
