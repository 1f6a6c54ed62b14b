"""The readable reference for convolution: im2col, col2im and conv2d in a few lines of NumPy.

Read this before the fast kernels. ``_numpy.py`` and ``_cupy.py`` compute exactly these
functions (the tests use this module as their oracle), only faster: channels-last layouts,
cache-sized batch blocks, threads, one strided copy instead of the loops below. Here each
output pixel is visited in turn; the batch and the channels are whole arrays.

Shapes are NCHW; ``pads`` are (top, bottom, left, right), non-negative; strides, dilations
and kernel sizes are (rows, columns) pairs. NumPy arrays only.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> im2col(x, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)).reshape(4, 4)   # one row per window
    array([[ 0.,  1.,  4.,  5.],
           [ 2.,  3.,  6.,  7.],
           [ 8.,  9., 12., 13.],
           [10., 11., 14., 15.]])
    >>> conv2d(x, np.ones((1, 1, 2, 2)), None, (2, 2), (0, 0, 0, 0), (1, 1), 1)[0, 0]
    array([[10., 18.],
           [42., 50.]])
"""
from __future__ import annotations

import numpy as np

__all__ = ["col2im", "conv2d", "im2col", "output_hw"]

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


def output_hw(in_hw: Pair, kernel: Pair, stride: Pair, pads: Pads, dilation: Pair) -> Pair:
    """(Ho, Wo): how many windows fit. A window spans ``dilation*(k - 1) + 1`` pixels."""
    span_h, span_w = dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1
    return ((in_hw[0] + pads[0] + pads[1] - span_h) // stride[0] + 1,
            (in_hw[1] + pads[2] + pads[3] - span_w) // stride[1] + 1)


def _window(x_pad: np.ndarray, ho: int, wo: int, kernel: Pair, stride: Pair,
            dilation: Pair) -> np.ndarray:
    """The (N, C, kh, kw) view of the padded input that output pixel (ho, wo) sees."""
    top, left = ho * stride[0], wo * stride[1]
    return x_pad[:, :, top:top + dilation[0] * (kernel[0] - 1) + 1:dilation[0],
                 left:left + dilation[1] * (kernel[1] - 1) + 1:dilation[1]]


def _pad(x: np.ndarray, pads: Pads) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))


def im2col(x: np.ndarray, kernel: Pair, stride: Pair, pads: Pads, dilation: Pair) -> np.ndarray:
    """Every window of x (N, C, H, W), one per output pixel -> (N, Ho, Wo, kh, kw, C).

    ``cols.reshape(N*Ho*Wo, kh*kw*C)`` is the matrix whose row (n, ho, wo) is the window that
    output pixel sees, ordered kernel row i, kernel column j, channel c; zeros in the padding.
    """
    N, C, H, W = x.shape
    Ho, Wo = output_hw((H, W), kernel, stride, pads, dilation)
    x_pad = _pad(x, pads)
    cols = np.zeros((N, Ho, Wo, kernel[0], kernel[1], C), x.dtype)
    for ho in range(Ho):
        for wo in range(Wo):
            cols[:, ho, wo] = _window(x_pad, ho, wo, kernel, stride, dilation).transpose(0, 2, 3, 1)
    return cols


def col2im(cols: np.ndarray, in_hw: Pair, stride: Pair, pads: Pads,
           dilation: Pair) -> np.ndarray:
    """The adjoint of :func:`im2col`: add columns (N, Ho, Wo, kh, kw, C) back into
    (N, C, H, W). A pixel in several windows receives the sum of their entries."""
    N, Ho, Wo, kh, kw, C = cols.shape
    H, W = in_hw
    x_pad = np.zeros((N, C, H + pads[0] + pads[1], W + pads[2] + pads[3]), cols.dtype)
    for ho in range(Ho):
        for wo in range(Wo):
            window = _window(x_pad, ho, wo, (kh, kw), stride, dilation)    # a view: += adds
            window += cols[:, ho, wo].transpose(0, 3, 1, 2)
    return x_pad[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W]          # drop the padding


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, pads: Pads,
           dilation: Pair, groups: int) -> np.ndarray:
    """Cross-correlation by its definition: x (N, C, H, W), w (K, C/groups, kh, kw), b (K,)
    or None -> y (N, K, Ho, Wo), each output pixel a dot product of a window and a filter:

        y[n, k, ho, wo] = b[k] + sum over c, i, j of
                          w[k, c, i, j] * x_pad[n, g*C/groups + c, ho*sh + i*dh, wo*sw + j*dw]

    where g = k // (K/groups) is the group of filter k: it sees only its group's channels.
    """
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    Kg = K // groups
    Ho, Wo = output_hw((H, W), (kh, kw), stride, pads, dilation)
    x_pad = _pad(x, pads)
    y = np.zeros((N, K, Ho, Wo), np.result_type(x, w))
    for ho in range(Ho):
        for wo in range(Wo):
            window = _window(x_pad, ho, wo, (kh, kw), stride, dilation)    # (N, C, kh, kw)
            for g in range(groups):
                channels, filters = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
                # (N, Cg, kh, kw) . (Kg, Cg, kh, kw) over (c, i, j) -> (N, Kg)
                y[:, filters, ho, wo] = np.tensordot(window[:, channels], w[filters],
                                                     axes=([1, 2, 3], [1, 2, 3]))
    return y if b is None else y + b.reshape(1, K, 1, 1)
