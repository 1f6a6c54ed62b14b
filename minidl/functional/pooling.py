"""Max, average, adaptive-average and global-average pooling over (N, C, H, W) inputs.

The backward of each pooling op is a Function too (``MaxPool2dGrad``, ``AvgPool2dGrad``),
and each is linear with the forward as its adjoint, so double backprop through a CNN works.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels, parallel
from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..kernels import Pads
from .reduction import mean
from .validation import IntOrPair, Pair, check_floating, check_ndim, to_pair


def _check_input(x: Any, op: str) -> None:
    check_ndim(x, 4, "input", op, "(N, C, H, W)")
    check_floating(x, "input", op)


def _pool_geometry(op: str, x: Any, kernel_size: IntOrPair, stride: IntOrPair | None,
                   padding: IntOrPair, ceil_mode: bool,
                   dilation: IntOrPair = 1) -> tuple[Pair, Pair, Pair, Pads, Pair]:
    """Check arguments and return kernel, stride, padding, kernel pads and output size.

    Output size follows torch: a window spans ``dilation*(kernel_size - 1) + 1`` pixels;
    with ceil_mode a last, partial window is kept only if it starts inside the input or the
    left padding. The kernel pads add, at the bottom/right, whatever that partial window
    hangs over.
    """
    _check_input(x, op)
    k = to_pair(kernel_size, "kernel_size", op)
    s = k if stride is None or stride == () else to_pair(stride, "stride", op)
    p = to_pair(padding, "padding", op, allow_zero=True)
    d = to_pair(dilation, "dilation", op)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half of kernel_size {k}")
    ext = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    H, W = x.shape[2], x.shape[3]
    out = []
    for size, kk, ss, pp in ((H, ext[0], s[0], p[0]), (W, ext[1], s[1], p[1])):
        span = size + 2 * pp - kk
        if span < 0:
            extent = "" if d == (1, 1) else f" (extent {ext} with dilation {d})"
            raise ValueError(f"{op}: kernel_size {k}{extent} is larger than the padded input "
                             f"{(H + 2 * p[0], W + 2 * p[1])} (input shape {tuple(x.shape)}, "
                             f"padding {p})")
        o = (span + (ss - 1 if ceil_mode else 0)) // ss + 1
        if ceil_mode and (o - 1) * ss >= size + pp:
            o -= 1
        out.append(o)
    Ho, Wo = out
    pads = (p[0], max(p[0], (Ho - 1) * s[0] + ext[0] - H - p[0]),
            p[1], max(p[1], (Wo - 1) * s[1] + ext[1] - W - p[1]))
    return k, s, p, pads, (Ho, Wo)


# ---- max pooling --------------------------------------------------------------------------

class MaxPool2d(Function):
    """Window maxima: (N, C, H, W) -> (N, C, Ho, Wo); backward uses the saved argmax."""

    def __init__(self, kernel: Pair, stride: Pair, pads: Pads, out_hw: Pair,
                 dilation: Pair = (1, 1)) -> None:
        self.kernel, self.stride, self.pads, self.out_hw = kernel, stride, pads, out_hw
        self.dilation = dilation

    def forward(self, x):
        y, self.idx = kernels.max_pool2d_forward(x, self.kernel, self.stride, self.pads,
                                                 self.out_hw, self.dilation)
        return y

    def backward(self, gy):
        return MaxPool2dGrad(self.idx, tuple(self.input_shapes[0][2:]), self.kernel,
                             self.stride, self.pads, self.dilation)(gy)


class MaxPool2dGrad(Function):
    """Send gy (N, C, Ho, Wo) to the argmax of each window -> (N, C, H, W)."""

    def __init__(self, idx: Any, in_hw: Pair, kernel: Pair, stride: Pair, pads: Pads,
                 dilation: Pair = (1, 1)) -> None:
        self.idx, self.in_hw, self.kernel, self.stride, self.pads = (idx, in_hw, kernel,
                                                                     stride, pads)
        self.dilation = dilation

    def forward(self, gy):
        return kernels.max_pool2d_backward(gy, self.idx, self.in_hw, self.kernel, self.stride,
                                           self.pads, self.dilation)

    def backward(self, ggx):
        return MaxPool2dGather(self.idx, self.kernel, self.stride, self.pads,
                               self.dilation)(ggx)


class MaxPool2dGather(Function):
    """Pick each window's element at the saved argmax (the adjoint of MaxPool2dGrad)."""

    def __init__(self, idx: Any, kernel: Pair, stride: Pair, pads: Pads,
                 dilation: Pair = (1, 1)) -> None:
        self.idx, self.kernel, self.stride, self.pads = idx, kernel, stride, pads
        self.dilation = dilation

    def forward(self, x):
        return kernels.max_pool2d_gather(x, self.idx, self.kernel, self.stride, self.pads,
                                         self.dilation)

    def backward(self, gy):
        return MaxPool2dGrad(self.idx, tuple(self.input_shapes[0][2:]), self.kernel,
                             self.stride, self.pads, self.dilation)(gy)


def max_pool2d(x: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0, dilation: IntOrPair = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``: (N, C, H, W) -> (N, C, Ho, Wo).

    ``stride`` defaults to ``kernel_size``; taps are ``dilation`` pixels apart, so a window
    spans ``dilation*(kernel_size - 1) + 1``; padding counts as -inf (it never wins); ties go
    to the first maximum in row-major window order, and so does the gradient. With
    ``return_indices`` also returns, as torch does, int64 indices (N, C, Ho, Wo) of each
    maximum, flattened over its input plane (``h*W + w``).
    """
    op = "max_pool2d"
    if isinstance(dilation, bool):
        raise TypeError(f"{op}: dilation={dilation}: torch's order is (input, kernel_size, "
                        f"stride, padding, dilation, ceil_mode, return_indices); pass "
                        f"ceil_mode={dilation} by keyword")
    k, s, p, pads, out_hw = _pool_geometry(op, x, kernel_size, stride, padding, ceil_mode,
                                           dilation)
    d = to_pair(dilation, "dilation", op)
    for size, o, kk, ss, pp, dd in zip(x.shape[2:], out_hw, k, s, p, d):
        if dd == 1:   # padding <= kernel_size // 2 leaves every undilated window a real pixel
            continue
        # with dilation, a window's taps can all fall in the padding; torch gives -inf there
        taps = (np.arange(o) * ss - pp)[:, None] + np.arange(kk) * dd
        if not ((taps >= 0) & (taps < size)).any(axis=1).all():
            raise ValueError(f"{op}: with dilation {d} and padding {p} some windows see only "
                             f"padding (input shape {tuple(x.shape)}, kernel_size {k}); use "
                             f"less padding or dilation")
    fn = MaxPool2d(k, s, pads, out_hw, d)
    y = fn(x)
    if not return_indices:
        return y
    idx = kernels.max_pool2d_indices(fn.idx, tuple(x.shape[2:]), k, s, pads, d)
    return y, Tensor(idx)


# ---- average pooling ----------------------------------------------------------------------

def _avg_inv_divisor(xp: Any, in_hw: Pair, out_hw: Pair, k: Pair, s: Pair, p: Pair,
                     count_include_pad: bool, dtype: Any,
                     divisor_override: int | None = None) -> Any:
    """1 / (number of elements averaged) per output position, (Ho, Wo), as torch counts.

    Padding counts when ``count_include_pad``; the ceil_mode overhang never does; a
    ``divisor_override`` replaces every count.
    """
    if divisor_override is not None:
        return xp.full(out_hw, 1.0 / divisor_override, dtype=dtype)
    counts = []
    for size, o, kk, ss, pp in zip(in_hw, out_hw, k, s, p):
        start = np.arange(o) * ss - pp
        end = np.minimum(start + kk, size + pp)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        counts.append(end - start)
    return xp.asarray(1.0 / np.outer(counts[0], counts[1]), dtype=dtype)


class AvgPool2d(Function):
    """Window means: (N, C, H, W) -> (N, C, Ho, Wo)."""

    def __init__(self, kernel: Pair, stride: Pair, pads: Pads, out_hw: Pair,
                 inv_div: Any) -> None:
        self.kernel, self.stride, self.pads, self.out_hw, self.inv_div = (kernel, stride, pads,
                                                                          out_hw, inv_div)

    def forward(self, x):
        return kernels.avg_pool2d_forward(x, self.kernel, self.stride, self.pads, self.out_hw,
                                          self.inv_div.astype(x.dtype, copy=False))

    def backward(self, gy):
        return AvgPool2dGrad(tuple(self.input_shapes[0][2:]), self.kernel, self.stride,
                             self.pads, self.inv_div)(gy)


class AvgPool2dGrad(Function):
    """Spread gy (N, C, Ho, Wo) evenly over each window -> (N, C, H, W)."""

    def __init__(self, in_hw: Pair, kernel: Pair, stride: Pair, pads: Pads,
                 inv_div: Any) -> None:
        self.in_hw, self.kernel, self.stride, self.pads, self.inv_div = (in_hw, kernel, stride,
                                                                         pads, inv_div)

    def forward(self, gy):
        return kernels.avg_pool2d_backward(gy, self.in_hw, self.kernel, self.stride, self.pads,
                                           self.inv_div.astype(gy.dtype, copy=False))

    def backward(self, ggx):
        return AvgPool2d(self.kernel, self.stride, self.pads, tuple(self.input_shapes[0][2:]),
                         self.inv_div)(ggx)


def avg_pool2d(x: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``: (N, C, H, W) ->
    (N, C, Ho, Wo). ``count_include_pad=False`` averages over the real elements only;
    ``divisor_override`` divides every window sum by that number instead."""
    op = "avg_pool2d"
    if divisor_override is not None and (isinstance(divisor_override, bool) or
                                         not isinstance(divisor_override, (int, np.integer))
                                         or divisor_override == 0):
        raise ValueError(f"{op}: divisor_override must be a non-zero int or None, got "
                         f"{divisor_override!r}")
    k, s, p, pads, out_hw = _pool_geometry(op, x, kernel_size, stride, padding, ceil_mode)
    xp = get_array_module(x)
    inv_div = _avg_inv_divisor(xp, tuple(x.shape[2:]), out_hw, k, s, p, count_include_pad,
                               x.dtype, divisor_override)
    return AvgPool2d(k, s, pads, out_hw, inv_div)(x)


# ---- adaptive and global average pooling --------------------------------------------------

class _SeparableMap(Function):
    """y = A @ x @ B^T over the last two axes (A (Ho, H), B (Wo, W)); linear, so its
    backward is the same map with the transposed matrices."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def forward(self, x):
        a, b = self.a.astype(x.dtype, copy=False), self.b.astype(x.dtype, copy=False)
        return parallel.matmul(a, parallel.matmul(x, b.T))      # NumPy: with a fixed BLAS

    def backward(self, gy):
        return _SeparableMap(self.a.T, self.b.T)(gy)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix of torch's adaptive bins [floor(i*size/out),
    ceil((i+1)*size/out))."""
    m = np.zeros((out, size))
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int | None, int | None]) -> Tensor:
    """Average pooling to a fixed output size, as torch's: (N, C, H, W) -> (N, C, Ho, Wo).

    Bin i along an axis of size H averages rows ``floor(i*H/Ho)`` to ``ceil((i+1)*H/Ho)-1``,
    so bins may overlap when Ho does not divide H. ``None`` keeps that input size.
    """
    op = "adaptive_avg_pool2d"
    _check_input(x, op)
    H, W = x.shape[2], x.shape[3]
    if isinstance(output_size, int) or output_size is None:
        output_size = (output_size, output_size)
    Ho, Wo = (H if output_size[0] is None else output_size[0],
              W if output_size[1] is None else output_size[1])
    to_pair((Ho, Wo), "output_size", op)
    if (Ho, Wo) == (1, 1):
        return global_avg_pool2d(x, keepdims=True)
    if H % Ho == 0 and W % Wo == 0:  # regular windows: the pooling kernel is faster
        return avg_pool2d(x, (H // Ho, W // Wo))
    xp = get_array_module(x)
    return _SeparableMap(xp.asarray(_adaptive_matrix(H, Ho)),
                         xp.asarray(_adaptive_matrix(W, Wo)))(x)


def global_avg_pool2d(x: Tensor, keepdims: bool = False) -> Tensor:
    """Mean over H and W: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``keepdims``."""
    _check_input(x, "global_avg_pool2d")
    return mean(x, axis=(2, 3), keepdims=keepdims)


__all__ = ["adaptive_avg_pool2d", "avg_pool2d", "global_avg_pool2d", "max_pool2d",
           "AvgPool2d", "AvgPool2dGrad", "MaxPool2d", "MaxPool2dGather", "MaxPool2dGrad"]
