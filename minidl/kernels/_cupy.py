"""CuPy kernels for convolution and pooling (GPU).

Each kernel is a ``cupy.ElementwiseKernel`` described by one entry of the ``_KERNELS``
table, built once (``functools.cache``) and compiled by CuPy on first use, then served from
CuPy's kernel cache. One thread computes one output element; the scatter directions
(col2im, pooling backward) are written as gathers (each input pixel sums the windows that
contain it), so no atomics are needed and results are deterministic. Flat offsets into the
arrays are computed in ``ptrdiff_t``: a column matrix can pass 2**31 elements (VGG's second
conv at batch 128 has 3.7e9), and an ``int`` offset would wrap around to an illegal address.

The column matrix on the GPU is (G, C/G*kh*kw, N*Ho*Wo): channel-major rows, so that the
forward is ONE batched GEMM ``W (G, K/G, C/G*kh*kw) @ cols`` per call and the weight gradient
another, both handed to cuBLAS without copies. Public shapes are NCHW as on the CPU.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

from ..backend import xp_for
from ._numpy import Pads, is_pointwise, out_size

_INDEX = """
    const int wo = i % Wo;
    const int ho = (i / Wo) % Ho;
    const int n = (i / (Wo * Ho)) % N;
    const int t = i / (Wo * Ho * N);
    const int jj = t % kw;
    const int ii = (t / kw) % kh;
    const int c = t / (kw * kh);
"""


class _Spec(NamedTuple):
    """One ``cupy.ElementwiseKernel``: its arguments, in the order CuPy takes them."""

    in_params: str
    out_params: str
    operation: str  # the CUDA body run by each thread; ``i`` is its output index
    name: str


_KERNELS: dict[str, _Spec] = {
    "im2col": _Spec(
        # x (N, C, H, W) contiguous -> col (C, kh, kw, N, Ho, Wo)
        "raw T x, int32 N, int32 C, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, "
        "int32 kw, int32 sy, int32 sx, int32 ph, int32 pw, int32 dy, int32 dx",
        "T col",
        _INDEX + """
            const int h = ho * sy - ph + ii * dy;
            const int w = wo * sx - pw + jj * dx;
            const ptrdiff_t nc = (ptrdiff_t)n * C + c;
            col = (0 <= h && h < H && 0 <= w && w < W) ? x[(nc * H + h) * W + w] : (T)0;
            """, "minidl_im2col"),
    "col2im": _Spec(
        # col (C, kh, kw, N, Ho, Wo) -> img (N, C, H, W): each pixel gathers its windows
        "raw T col, int32 N, int32 C, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, "
        "int32 kw, int32 sy, int32 sx, int32 ph, int32 pw, int32 dy, int32 dx",
        "T img",
        """
            const int w = i % W;
            const int h = (i / W) % H;
            const int c = (i / (W * H)) % C;
            const int n = i / (W * H * C);
            T val = 0;
            for (int ii = 0; ii < kh; ++ii) {
                const int hh = h + ph - ii * dy;
                if (hh < 0 || hh % sy != 0) continue;
                const int ho = hh / sy;
                if (ho >= Ho) continue;
                for (int jj = 0; jj < kw; ++jj) {
                    const int ww = w + pw - jj * dx;
                    if (ww < 0 || ww % sx != 0) continue;
                    const int wo = ww / sx;
                    if (wo >= Wo) continue;
                    const ptrdiff_t row = ((ptrdiff_t)c * kh + ii) * kw + jj;
                    val += col[((row * N + n) * Ho + ho) * Wo + wo];
                }
            }
            img = val;
            """, "minidl_col2im"),
    "max_fwd": _Spec(
        # x (N*C, H, W) -> y, idx (N*C, Ho, Wo); ties go to the first maximum (strict >);
        # taps are dly (dlx) rows (columns) apart
        "raw T x, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, int32 sy, "
        "int32 sx, int32 ph, int32 pw, int32 dly, int32 dlx",
        "T y, int32 idx",
        """
            const int wo = i % Wo;
            const int ho = (i / Wo) % Ho;
            const int nc = i / (Wo * Ho);
            T best = 0;       // replaced by the first element in bounds (arg < 0)
            int arg = -1;
            for (int ii = 0; ii < kh; ++ii) {
                const int h = ho * sy - ph + ii * dly;
                if (h < 0 || h >= H) continue;
                for (int jj = 0; jj < kw; ++jj) {
                    const int w = wo * sx - pw + jj * dlx;
                    if (w < 0 || w >= W) continue;
                    const T v = x[((ptrdiff_t)nc * H + h) * W + w];
                    if (arg < 0 || v > best) { best = v; arg = ii * kw + jj; }
                }
            }
            y = best;
            idx = arg;
            """, "minidl_max_pool_fwd"),
    "max_bwd": _Spec(
        # gy, idx (N*C, Ho, Wo) -> dx (N*C, H, W): each pixel sums the windows it won
        "raw T gy, raw int32 idx, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, "
        "int32 kw, int32 sy, int32 sx, int32 ph, int32 pw, int32 dly, int32 dlx",
        "T dx",
        """
            const int w = i % W;
            const int h = (i / W) % H;
            const int nc = i / (W * H);
            T val = 0;
            for (int ii = 0; ii < kh; ++ii) {
                const int hh = h + ph - ii * dly;
                if (hh < 0 || hh % sy != 0) continue;
                const int ho = hh / sy;
                if (ho >= Ho) continue;
                for (int jj = 0; jj < kw; ++jj) {
                    const int ww = w + pw - jj * dlx;
                    if (ww < 0 || ww % sx != 0) continue;
                    const int wo = ww / sx;
                    if (wo >= Wo) continue;
                    const ptrdiff_t k = ((ptrdiff_t)nc * Ho + ho) * Wo + wo;
                    if (idx[k] == ii * kw + jj) val += gy[k];
                }
            }
            dx = val;
            """, "minidl_max_pool_bwd"),
    "max_gather": _Spec(
        # x (N*C, H, W), idx (N*C, Ho, Wo) -> y: the element at each window's argmax
        "raw T x, int32 idx, int32 H, int32 W, int32 Ho, int32 Wo, int32 kw, int32 sy, "
        "int32 sx, int32 ph, int32 pw, int32 dly, int32 dlx",
        "T y",
        """
            const int wo = i % Wo;
            const int ho = (i / Wo) % Ho;
            const int nc = i / (Wo * Ho);
            const int h = ho * sy - ph + idx / kw * dly;
            const int w = wo * sx - pw + idx % kw * dlx;
            y = (0 <= h && h < H && 0 <= w && w < W) ? x[((ptrdiff_t)nc * H + h) * W + w] : (T)0;
            """, "minidl_max_pool_gather"),
    "avg_fwd": _Spec(
        # x (N*C, H, W), inv_div (Ho, Wo) -> y (N*C, Ho, Wo): window sums / divisor
        "raw T x, raw T inv_div, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, "
        "int32 kw, int32 sy, int32 sx, int32 ph, int32 pw",
        "T y",
        """
            const int wo = i % Wo;
            const int ho = (i / Wo) % Ho;
            const int nc = i / (Wo * Ho);
            T acc = 0;
            for (int ii = 0; ii < kh; ++ii) {
                const int h = ho * sy - ph + ii;
                if (h < 0 || h >= H) continue;
                for (int jj = 0; jj < kw; ++jj) {
                    const int w = wo * sx - pw + jj;
                    if (w < 0 || w >= W) continue;
                    acc += x[((ptrdiff_t)nc * H + h) * W + w];
                }
            }
            y = acc * inv_div[ho * Wo + wo];
            """, "minidl_avg_pool_fwd"),
    "avg_bwd": _Spec(
        # gy (N*C, Ho, Wo) -> dx (N*C, H, W): each pixel gathers its windows
        "raw T gy, raw T inv_div, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, "
        "int32 kw, int32 sy, int32 sx, int32 ph, int32 pw",
        "T dx",
        """
            const int w = i % W;
            const int h = (i / W) % H;
            const int nc = i / (W * H);
            T val = 0;
            for (int ii = 0; ii < kh; ++ii) {
                const int hh = h + ph - ii;
                if (hh < 0 || hh % sy != 0) continue;
                const int ho = hh / sy;
                if (ho >= Ho) continue;
                for (int jj = 0; jj < kw; ++jj) {
                    const int ww = w + pw - jj;
                    if (ww < 0 || ww % sx != 0) continue;
                    const int wo = ww / sx;
                    if (wo >= Wo) continue;
                    val += gy[((ptrdiff_t)nc * Ho + ho) * Wo + wo] * inv_div[ho * Wo + wo];
                }
            }
            dx = val;
            """, "minidl_avg_pool_bwd"),
}


@functools.cache
def _k(name: str) -> Any:
    """Build (once) the ElementwiseKernel called ``name`` (a key of ``_KERNELS``)."""
    return xp_for("cuda").ElementwiseKernel(*_KERNELS[name])


def _cols(x: Any, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
          dilation: tuple[int, int], out_hw: tuple[int, int]) -> Any:
    """Column matrix (C, kh, kw, N, Ho, Wo) of x (N, C, H, W)."""
    cp = xp_for("cuda")
    x = cp.ascontiguousarray(x)
    N, C, H, W = x.shape
    (kh, kw), (Ho, Wo) = kernel, out_hw
    col = cp.empty((C, kh, kw, N, Ho, Wo), x.dtype)
    _k("im2col")(x, N, C, H, W, Ho, Wo, kh, kw, stride[0], stride[1], pads[0], pads[2],
                 dilation[0], dilation[1], col)
    return col


def _img(col: Any, in_hw: tuple[int, int], stride: tuple[int, int], pads: Pads,
         dilation: tuple[int, int]) -> Any:
    """Adjoint of :func:`_cols`: columns (C, kh, kw, N, Ho, Wo) -> image (N, C, H, W)."""
    cp = xp_for("cuda")
    C, kh, kw, N, Ho, Wo = col.shape
    H, W = in_hw
    img = cp.empty((N, C, H, W), col.dtype)
    _k("col2im")(cp.ascontiguousarray(col), N, C, H, W, Ho, Wo, kh, kw, stride[0], stride[1],
                 pads[0], pads[2], dilation[0], dilation[1], img)
    return img


def _out_hw(hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
            dilation: tuple[int, int]) -> tuple[int, int]:
    return (out_size(hw[0], kernel[0], stride[0], pads[0], pads[1], dilation[0]),
            out_size(hw[1], kernel[1], stride[1], pads[2], pads[3], dilation[1]))


def conv2d_forward(x: Any, w: Any, b: Any, stride: tuple[int, int], pads: Pads,
                   dilation: tuple[int, int], groups: int) -> Any:
    """y = conv(x, w) + b; x (N, C, H, W), w (K, C/G, kh, kw) -> y (N, K, Ho, Wo)."""
    cp = xp_for("cuda")
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    if is_pointwise((kh, kw), stride, pads, groups):
        # a 1x1 conv is one GEMM on the (C, N*Ho*Wo) pixel matrix: no im2col
        xs = x[:, :, ::stride[0], ::stride[1]]
        y = cp.matmul(w.reshape(K, C), _gy_matrix(xs, 1)[0]).reshape(K, N, *xs.shape[2:])
        if b is not None:
            y += b.reshape(K, 1, 1, 1)
        return y.transpose(1, 0, 2, 3)
    Ho, Wo = _out_hw((H, W), (kh, kw), stride, pads, dilation)
    col = _cols(x, (kh, kw), stride, pads, dilation, (Ho, Wo))
    cols = col.reshape(groups, Cg * kh * kw, N * Ho * Wo)
    y = cp.matmul(w.reshape(groups, K // groups, Cg * kh * kw), cols)   # (G, K/G, N*Ho*Wo)
    y = y.reshape(K, N, Ho, Wo)
    if b is not None:
        y += b.reshape(K, 1, 1, 1)
    return y.transpose(1, 0, 2, 3)


def _gy_matrix(gy: Any, groups: int) -> Any:
    """gy (N, K, Ho, Wo) -> (G, K/G, N*Ho*Wo); free when gy came from conv2d_forward (or
    any array stored (K, N, Ho, Wo), as every conv kernel here returns them)."""
    cp = xp_for("cuda")
    N, K, Ho, Wo = gy.shape
    return cp.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(groups, K // groups,
                                                                  N * Ho * Wo)


def conv2d_grad_input(gy: Any, w: Any, in_hw: tuple[int, int], stride: tuple[int, int],
                      pads: Pads, dilation: tuple[int, int], groups: int) -> Any:
    """dx of conv2d: one GEMM W^T @ gy, then col2im; gy (N, K, Ho, Wo) -> (N, C, H, W)."""
    cp = xp_for("cuda")
    N, K, Ho, Wo = gy.shape
    _, Cg, kh, kw = w.shape
    if is_pointwise((kh, kw), stride, pads, groups, tuple(in_hw), (Ho, Wo)):
        dx = cp.matmul(w.reshape(K, Cg).T, _gy_matrix(gy, 1)[0])      # (C, N*Ho*Wo)
        dx = dx.reshape(Cg, N, Ho, Wo).transpose(1, 0, 2, 3)
        if stride == (1, 1) and tuple(in_hw) == (Ho, Wo):
            return dx
        full = cp.zeros((Cg, N, *in_hw), dx.dtype).transpose(1, 0, 2, 3)
        full[:, :, ::stride[0], ::stride[1]] = dx
        return full
    wm = w.reshape(groups, K // groups, Cg * kh * kw)
    dcol = cp.matmul(wm.transpose(0, 2, 1), _gy_matrix(gy, groups))
    dcol = dcol.reshape(Cg * groups, kh, kw, N, Ho, Wo)
    return _img(dcol, in_hw, stride, pads, dilation)


def conv2d_grad_weight(x: Any, gy: Any, kernel: tuple[int, int], stride: tuple[int, int],
                       pads: Pads, dilation: tuple[int, int], groups: int) -> Any:
    """dw of conv2d: one GEMM gy @ cols^T; -> (K, C/G, kh, kw)."""
    cp = xp_for("cuda")
    N, K, Ho, Wo = gy.shape
    C = x.shape[1]
    kh, kw = kernel
    if is_pointwise(kernel, stride, pads, groups, tuple(x.shape[2:]), (Ho, Wo)):
        xs = _gy_matrix(x[:, :, ::stride[0], ::stride[1]], 1)[0]
        return cp.matmul(_gy_matrix(gy, 1)[0], xs.T).reshape(K, C, 1, 1)
    col = _cols(x, kernel, stride, pads, dilation, (Ho, Wo))
    cols = col.reshape(groups, C // groups * kh * kw, N * Ho * Wo)
    gw = cp.matmul(_gy_matrix(gy, groups), cols.transpose(0, 2, 1))
    return gw.reshape(K, C // groups, kh, kw)


def im2col(x: Any, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
           dilation: tuple[int, int]) -> Any:
    """Columns of x (N, C, H, W) as (N, Ho, Wo, kh, kw, C), the same layout as on the CPU."""
    cp = xp_for("cuda")
    out_hw = _out_hw(x.shape[2:], kernel, stride, pads, dilation)
    return cp.ascontiguousarray(
        _cols(x, kernel, stride, pads, dilation, out_hw).transpose(3, 4, 5, 1, 2, 0))


def col2im(cols: Any, in_hw: tuple[int, int], stride: tuple[int, int], pads: Pads,
           dilation: tuple[int, int]) -> Any:
    """Adjoint of :func:`im2col`: (N, Ho, Wo, kh, kw, C) -> (N, C, H, W)."""
    return _img(cols.transpose(5, 3, 4, 0, 1, 2), in_hw, stride, pads, dilation)


def _pool_args(x_hw: tuple[int, int], out_hw: tuple[int, int], kernel: tuple[int, int],
               stride: tuple[int, int], pads: Pads) -> tuple[int, ...]:
    return (x_hw[0], x_hw[1], out_hw[0], out_hw[1], kernel[0], kernel[1], stride[0],
            stride[1], pads[0], pads[2])


def max_pool2d_forward(x: Any, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
                       out_hw: tuple[int, int],
                       dilation: tuple[int, int] = (1, 1)) -> tuple[Any, Any]:
    """Max over windows -> y (N, C, Ho, Wo) and argmax offsets i*kw + j (int32)."""
    cp = xp_for("cuda")
    N, C, H, W = x.shape
    y = cp.empty((N, C) + tuple(out_hw), x.dtype)
    idx = cp.empty(y.shape, cp.int32)
    _k("max_fwd")(cp.ascontiguousarray(x), *_pool_args((H, W), out_hw, kernel, stride, pads),
                  dilation[0], dilation[1], y, idx)
    return y, idx


def max_pool2d_backward(gy: Any, idx: Any, in_hw: tuple[int, int], kernel: tuple[int, int],
                        stride: tuple[int, int], pads: Pads,
                        dilation: tuple[int, int] = (1, 1)) -> Any:
    """Route gy (N, C, Ho, Wo) to the saved argmax of each window -> (N, C, H, W)."""
    cp = xp_for("cuda")
    N, C, Ho, Wo = gy.shape
    dx = cp.empty((N, C) + tuple(in_hw), gy.dtype)
    _k("max_bwd")(cp.ascontiguousarray(gy), idx,
                  *_pool_args(in_hw, (Ho, Wo), kernel, stride, pads), dilation[0], dilation[1],
                  dx)
    return dx


def max_pool2d_gather(x: Any, idx: Any, kernel: tuple[int, int], stride: tuple[int, int],
                      pads: Pads, dilation: tuple[int, int] = (1, 1)) -> Any:
    """Pick the element at the saved argmax offset of every window of x."""
    cp = xp_for("cuda")
    N, C, H, W = x.shape
    Ho, Wo = idx.shape[2:]
    y = cp.empty(idx.shape, x.dtype)
    _k("max_gather")(cp.ascontiguousarray(x), idx, H, W, Ho, Wo, kernel[1], stride[0],
                     stride[1], pads[0], pads[2], dilation[0], dilation[1], y)
    return y


def max_pool2d_indices(idx: Any, in_hw: tuple[int, int], kernel: tuple[int, int],
                       stride: tuple[int, int], pads: Pads,
                       dilation: tuple[int, int] = (1, 1)) -> Any:
    """torch's ``return_indices``: argmax offsets (N, C, Ho, Wo) as flat positions
    ``h*W + w`` in the input plane (int64)."""
    cp = xp_for("cuda")
    off = idx.astype(cp.int64)
    Ho, Wo = off.shape[2:]
    h = cp.arange(Ho)[:, None] * stride[0] - pads[0] + off // kernel[1] * dilation[0]
    w = cp.arange(Wo)[None, :] * stride[1] - pads[2] + off % kernel[1] * dilation[1]
    return h * in_hw[1] + w


def avg_pool2d_forward(x: Any, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
                       out_hw: tuple[int, int], inv_div: Any) -> Any:
    """Window sums times ``inv_div`` (Ho, Wo) -> (N, C, Ho, Wo)."""
    cp = xp_for("cuda")
    N, C, H, W = x.shape
    y = cp.empty((N, C) + tuple(out_hw), x.dtype)
    _k("avg_fwd")(cp.ascontiguousarray(x), cp.ascontiguousarray(inv_div, dtype=x.dtype),
                  *_pool_args((H, W), out_hw, kernel, stride, pads), y)
    return y


def avg_pool2d_backward(gy: Any, in_hw: tuple[int, int], kernel: tuple[int, int],
                        stride: tuple[int, int], pads: Pads, inv_div: Any) -> Any:
    """Adjoint of :func:`avg_pool2d_forward` -> (N, C, H, W)."""
    cp = xp_for("cuda")
    N, C, Ho, Wo = gy.shape
    dx = cp.empty((N, C) + tuple(in_hw), gy.dtype)
    _k("avg_bwd")(cp.ascontiguousarray(gy), cp.ascontiguousarray(inv_div, dtype=gy.dtype),
                  *_pool_args(in_hw, (Ho, Wo), kernel, stride, pads), dx)
    return dx
