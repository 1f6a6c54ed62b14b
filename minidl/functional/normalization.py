"""Batch normalisation and local response normalisation (AlexNet's LRN across channels).

Batch norm in training mode has a fused backward: ``BatchNormGrad`` computes dx, dgamma and
dbeta in one go with the closed-form three-term formula

    dx = gamma / sigma * (dy - mean(dy) - xhat * mean(dy * xhat))

instead of differentiating the chain mean -> var -> sqrt -> divide op by op. BatchNormGrad is
itself a Function whose backward (the second derivative) is written with Tensor ops, so
gradients of any order still work.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..parallel import get_num_threads, map_blocks
from .reduction import sum as _sum
from .shape import reshape

T = TypeVar("T")


def _stat_axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def _per_channel(v: Any, ndim: int) -> Any:
    """(C,) -> (1, C, 1, ...) so that it broadcasts against the input (array or Tensor)."""
    shape = (1, -1) + (1,) * (ndim - 2)
    return reshape(v, shape) if isinstance(v, Tensor) else v.reshape(shape)


# Row width (elements) that per-channel NumPy ops are given on channels-last data.
_WIDE_ROW = 512
# Bytes of a channels-last map per row block: each block is read by all of a pass's steps
# while it is in the cache, and blocks are shared out among the worker threads.
_BLOCK_BYTES = 2**20
# ... and at least this many blocks when there are two or more (a fixed number, so that the
# partial sums are the same for every thread count: docs/reproducibility.md).
_MIN_BLOCKS = 8


class _Channels:
    """Per-channel sums and broadcasts over arrays laid out like x (N, C, ...).

    A channels-last NumPy array (and any C-contiguous (N, C)) already is an (M, C) matrix in
    memory, M = N*H*W. NumPy broadcasts a (C,) vector over it one C-wide row at a time, which
    is slow for the C = 16-64 of small nets, and reducing over the outer axes is slower still
    (measured in docs/benchmarks.md). So such arrays are viewed as (M/r, r*C) matrices with
    rows of about 512 numbers, per-channel vectors are tiled r times to match, sums are
    BLAS matrix-vector products and sums of products an einsum. The rows are processed in
    blocks of about 1 MiB (:meth:`each`), on minidl's worker threads when there are several;
    the blocks depend on the shape only, and per-block partial sums are added in block order
    and folded back to (C,), so the bits do not depend on the thread count. Other layouts
    (NCHW, CuPy) use plain broadcasting and reductions over the non-channel axes, in one
    block.
    """

    def __init__(self, x: Any) -> None:
        self.shape, self.dtype, self.C = x.shape, x.dtype, x.shape[1]
        self.m = x.size // self.C
        self.xp = get_array_module(x)
        self.r = 0                                     # 0: broadcasting layout
        self.blocks, self.threads = [slice(None)], 1
        if type(x) is np.ndarray and self.m and self._rows(x).flags.c_contiguous:
            fit = 1 << max(0, (_WIDE_ROW // self.C).bit_length() - 1)
            self.r = min(fit, self.m & -self.m)        # a power of two that divides m
            rows = self.m // self.r
            n = max(1, x.nbytes // _BLOCK_BYTES)
            if x.nbytes >= 2 * _BLOCK_BYTES:   # the cut never depends on the thread count
                n, self.threads = max(n, _MIN_BLOCKS), get_num_threads()
            step = -(-rows // min(n, rows))
            self.blocks = [slice(i, i + step) for i in range(0, rows, step)]

    @staticmethod
    def _rows(a: np.ndarray) -> np.ndarray:
        return a if a.ndim == 2 else np.moveaxis(a, 1, -1)

    def view(self, a: Any) -> Any:
        """``a`` (shape of x) as the matrix the per-channel ops work on (a copy only when its
        layout differs from x's)."""
        if not self.r:
            return a
        rows = np.ascontiguousarray(self._rows(a))
        return rows.reshape(self.m // self.r, self.r * self.C)

    def empty(self, like: Any) -> tuple[Any, Any]:
        """A new array in the layout of ``like`` (x), and its :meth:`view`."""
        a = self.xp.empty_like(like)
        return a, self.view(a)

    def vector(self, v: Any) -> Any:
        """(C,) -> the operand that broadcasts it over a view."""
        v = v.astype(self.dtype, copy=False)
        return np.tile(v, self.r) if self.r else _per_channel(v, len(self.shape))

    def each(self, fn: Callable[[slice], T]) -> list[T]:
        """``fn(rows)`` for every row block of the views, in order (on the worker threads)."""
        return map_blocks(len(self.blocks), lambda _, i: fn(self.blocks[i]), self.threads)

    def part_sum(self, a: Any) -> Any:
        """Per-channel partial sum of one block of a view (fold the parts with :meth:`fold`)."""
        if not self.r:
            return a.sum(axis=_stat_axes(a.ndim))
        return np.ones(a.shape[0], a.dtype) @ a

    def part_dot(self, a: Any, b: Any) -> Any:
        """Per-channel partial sum of a * b over one block of two views."""
        if not self.r:
            return (a * b).sum(axis=_stat_axes(a.ndim))
        return np.einsum("ij,ij->j", a, b)

    def fold(self, parts: list[Any]) -> Any:
        """Add partial sums in block order -> (C,)."""
        total = parts[0].copy()
        for p in parts[1:]:
            total += p
        return total.reshape(self.r, self.C).sum(axis=0) if self.r else total


class BatchNorm(Function):
    """Training-mode batch norm over all axes but 1: x (N, C, ...), gamma, beta (C,)."""

    keep_inputs = (0, 1)
    #: apply a ReLU to each block of the output while it is in the cache (BatchNormReLU)
    relu = False

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def forward(self, x, gamma, beta):
        ch = _Channels(x)
        xv = ch.view(x)
        self.mean = ch.fold(ch.each(lambda rows: ch.part_sum(xv[rows]))) / ch.m
        y, yv = ch.empty(x)
        mean = ch.vector(self.mean)

        def center(rows: slice) -> Any:
            ch.xp.subtract(xv[rows], mean, out=yv[rows])
            return ch.part_dot(yv[rows], yv[rows])

        self.var = ch.fold(ch.each(center)) / ch.m       # biased, used to normalise
        self.inv_std = 1.0 / ch.xp.sqrt(self.var + self.eps)
        scale, shift = ch.vector(gamma * self.inv_std), ch.vector(beta)

        def affine(rows: slice) -> None:
            yv[rows] *= scale
            yv[rows] += shift
            if self.relu:
                ch.xp.maximum(yv[rows], 0, out=yv[rows])

        ch.each(affine)
        return y

    def backward(self, gy):
        x, gamma = self.inputs[0], self.inputs[1]
        return BatchNormGrad(self.mean, self.inv_std, self.eps)(x, gamma, gy)


class BatchNormGrad(Function):
    """(x, gamma, gy) -> (dx, dgamma, dbeta) of training-mode batch norm, fused.

    With a boolean ``mask`` (shape of x) the incoming gradient is ``gy * mask`` (a ReLU
    after the batch norm: BatchNormReLU), multiplied in block by block.
    """

    keep_inputs = (0, 1, 2)

    def __init__(self, mean: Any, inv_std: Any, eps: float, mask: Any = None) -> None:
        self.mean, self.inv_std, self.eps, self.mask = mean, inv_std, eps, mask

    def forward(self, x, gamma, gy):
        ch = _Channels(x)
        xv, g = ch.view(x), ch.view(gy)
        dx, xc = ch.empty(x)
        mean = ch.vector(self.mean)
        if self.mask is not None:
            mask, (_, g) = ch.view(self.mask), ch.empty(x)
            gy_view = ch.view(gy)

        def center(rows: slice) -> tuple[Any, Any]:
            if self.mask is not None:
                ch.xp.multiply(gy_view[rows], mask[rows], out=g[rows])
            ch.xp.subtract(xv[rows], mean, out=xc[rows])
            return ch.part_sum(g[rows]), ch.part_dot(g[rows], xc[rows])

        parts = ch.each(center)
        gbeta = ch.fold([p[0] for p in parts])
        ggamma = ch.fold([p[1] for p in parts]) * self.inv_std
        k = gamma * self.inv_std
        # dx = k*gy - (k*ggamma/m)*xhat - k*gbeta/m, assembled in place on xc = xhat/inv_std
        c_xc = ch.vector(-k * ggamma * self.inv_std / ch.m)
        c_gy, c_0 = ch.vector(k), ch.vector(k * gbeta / ch.m)

        def assemble(rows: slice) -> None:
            xc[rows] *= c_xc
            xc[rows] += g[rows] * c_gy
            xc[rows] -= c_0

        ch.each(assemble)
        return dx, ggamma, gbeta

    def backward(self, a, b_gamma, b_beta):
        # Second derivative, with <.> the mean over the non-channel axes, s = 1/sigma:
        #   Q  = gy - <gy> - xh<gy xh>                       (dx = gamma s Q)
        #   d gy    = gamma s P(A) + Bg xh + Bb,   P(v) = v - <v> - xh<v xh>
        #   d gamma = sum(A Q) s
        #   d x     = -gamma s^2 <A Q> xh + s P(R),  R = -gamma s(<gy xh> A + <A xh> gy) + Bg gy
        # Written with Tensor ops (x re-normalised here), so third derivatives work too.
        x, gamma, gy = self.inputs
        if self.mask is not None:
            mask = Tensor(self.mask.astype(gy.dtype))
            gy = gy * mask
        nd, axes = x.ndim, _stat_axes(x.ndim)

        def avg(v: Tensor) -> Tensor:
            return v.mean(axis=axes, keepdims=True)

        xc = x - avg(x)
        s = (avg(xc * xc) + self.eps) ** -0.5
        xh = xc * s
        g = _per_channel(gamma, nd)
        bg, bb = _per_channel(b_gamma, nd), _per_channel(b_beta, nd)

        def proj(v: Tensor) -> Tensor:
            return v - avg(v) - xh * avg(v * xh)

        need = self.needs_input_grad
        d_x = d_g = d_gy = None
        q = proj(gy)
        if need[0]:
            r = -g * s * (avg(gy * xh) * a + avg(a * xh) * gy) + bg * gy
            d_x = -g * s * s * avg(a * q) * xh + s * proj(r)
        if need[1]:
            d_g = reshape(_sum(a * q * s, axis=axes), (-1,))
        if need[2]:
            d_gy = g * s * proj(a) + bg * xh + bb
            if self.mask is not None:
                d_gy = d_gy * mask
        return d_x, d_g, d_gy


def _update_running(buf: Any, value: Any, momentum: float) -> None:
    """buf <- (1 - momentum) * buf + momentum * value, in place (Tensor or array)."""
    arr = buf.data if isinstance(buf, Tensor) else buf
    arr *= 1 - momentum
    arr += momentum * value.astype(arr.dtype, copy=False)


def _train_step(fn: BatchNorm, x: Tensor, running_mean: Tensor | Any | None,
                running_var: Tensor | Any | None, weight: Tensor | None, bias: Tensor | None,
                momentum: float) -> Tensor:
    """Training mode: ``fn`` (BatchNorm or BatchNormReLU) on x with the batch statistics
    (gamma 1 and beta 0 where no weight or bias is given), then the running statistics
    updated in place, the variance unbiased."""
    xp = get_array_module(x)
    C, m = x.shape[1], x.size // x.shape[1]
    gamma = weight if weight is not None else xp.ones(C, x.dtype)
    beta = bias if bias is not None else xp.zeros(C, x.dtype)
    y = fn(x, gamma, beta)
    if running_mean is not None:
        _update_running(running_mean, fn.mean, momentum)
    if running_var is not None:
        _update_running(running_var, fn.var * (m / (m - 1)), momentum)
    return y


def batch_norm(x: Tensor, running_mean: Tensor | Any | None, running_var: Tensor | Any | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over every axis but the channel axis 1, as torch's.

    x (N, C) or (N, C, H, W) (any (N, C, ...)); running_mean, running_var, weight, bias (C,).
    Training mode normalises with the batch statistics and, when running stats are given,
    updates them in place: ``running = (1 - momentum) * running + momentum * batch``, with
    the unbiased batch variance. Eval mode normalises with the running statistics.
    """
    op = "batch_norm"
    if len(x.shape) < 2:
        raise ValueError(f"{op}: expected an input (N, C, ...) with at least 2 dims, got shape "
                         f"{tuple(x.shape)}")
    C = x.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if v is not None and tuple(v.shape) != (C,):
            raise ValueError(f"{op}: {name} of shape {tuple(v.shape)} does not match the {C} "
                             f"channels of input {tuple(x.shape)}")
    xp = get_array_module(x)
    dtype = x.dtype
    if training:
        m = x.size // C if hasattr(x, "size") else 0
        if m <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"got input shape {tuple(x.shape)}")
        return _train_step(BatchNorm(eps), x, running_mean, running_var, weight, bias, momentum)
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
    if not isinstance(x, Tensor):
        x = Tensor(x)
    rm = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    rv = running_var.data if isinstance(running_var, Tensor) else running_var
    inv_std = (1.0 / xp.sqrt(rv.astype(dtype) + eps)).astype(dtype)
    if weight is None and bias is None:
        return (x - _per_channel(rm.astype(dtype), x.ndim)) * _per_channel(inv_std, x.ndim)
    scale = inv_std if weight is None else weight * inv_std
    shift = -rm.astype(dtype) * scale
    if bias is not None:
        shift = shift + bias
    nd = len(x.shape)
    return x * _per_channel(scale, nd) + _per_channel(shift, nd)


class _ChannelWindowSum(Function):
    """y[:, c] = sum of x[:, c - before : c + after + 1] (zeros outside); adjoint swaps
    before and after."""

    def __init__(self, before: int, after: int) -> None:
        self.before, self.after = before, after

    def forward(self, x):
        C = x.shape[1]
        y = x.copy()
        for o in range(1, min(self.before, C - 1) + 1):   # windows are small (AlexNet: 5)
            y[:, o:] += x[:, :C - o]
        for o in range(1, min(self.after, C - 1) + 1):
            y[:, :C - o] += x[:, o:]
        return y

    def backward(self, gy):
        return _ChannelWindowSum(self.after, self.before)(gy)


def local_response_norm(x: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """Local response normalisation across channels (AlexNet), as torch's:

    ``y[c] = x[c] / (k + alpha/size * sum(x[c']^2 for c' within the window of c))**beta``,
    the window running from ``c - size//2`` to ``c + (size-1)//2``. x (N, C, ...) -> same.
    """
    op = "local_response_norm"
    if len(x.shape) < 3:
        raise ValueError(f"{op}: expected an input (N, C, ...) with at least 3 dims, got shape "
                         f"{tuple(x.shape)}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    if not isinstance(x, Tensor):
        x = Tensor(x)
    div = _ChannelWindowSum(size // 2, (size - 1) // 2)(x * x) * (alpha / size) + k
    return x * div ** -beta
