"""NumPy kernels for convolution and pooling (CPU).

Layout, and why
---------------
The public shapes are NCHW, but inside these kernels every image is handled channels-last
(N, H, W, C):

* a window of a channels-last image is a run of ``kw * C`` contiguous numbers per kernel row,
  so im2col is ONE strided copy with long inner runs (no Python loop over pixels or offsets);
* the column matrix is ``(N*Ho*Wo, kh*kw*C)``, so the forward GEMM ``cols @ W`` writes the
  output straight into a channels-last buffer, with no transposing copy after it;
* outputs are (N, C, H, W) arrays stored channels-last (what PyTorch calls the channels_last
  memory format; they own their memory, they are not views). Element-wise NumPy ops keep
  that layout, so the next conv or pool reads its input without a transposing copy. (One
  exception: the offset-major input gradient of a conv with 2C <= K is stored NCHW, the
  layout its col2im adds into; every kernel reads either layout.)

The batch is processed in blocks of a few images so that the column matrix of a block stays in
the CPU cache: im2col, the GEMM and col2im then move cache-resident data, and the GEMM itself
runs faster on a block than on the whole column matrix (measured in benchmarks/bench_conv.py,
see docs/benchmarks.md). The loop over blocks is cache blocking, not a loop over images.
The blocks are shared out among :func:`minidl.parallel.get_num_threads` threads, each with
its own workspace and single-threaded BLAS, so copies and GEMMs all use every core. Block
sizes depend on the shapes only, and partial sums are added in block order, so the results
are the same bits for every thread count.

Padding is given as four numbers ``(top, bottom, left, right)``; a negative value crops.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..parallel import get_num_threads, map_blocks

Pads = tuple[int, int, int, int]

# Bytes of column matrix per batch block. benchmarks/bench_cpu_choices.py, one thread, on a
# 2-core EPYC whose 32 MiB L3 is shared with other jobs: the 32x64x32x32 / 64 filters 3x3 conv
# (forward + both gradients) 113 / 90 / 90 ms with 8 / 4 / 2 MiB blocks, a whole
# cifar_resnet20 b64 step 419 / 328 / 324 ms (the step's activations compete for the cache).
# (bench_conv's 128x256x14x14 conv prefers 8 MiB by about 8%; the whole step decides.)
BLOCK_BYTES = 4 * 2**20


def out_size(size: int, k: int, s: int, p_lo: int, p_hi: int, d: int) -> int:
    """Number of window positions along one axis."""
    return (size + p_lo + p_hi - d * (k - 1) - 1) // s + 1


# Below this many bytes of column matrix a conv runs on the calling thread alone: handing
# blocks to worker threads costs tens of microseconds.
PARALLEL_MIN_BYTES = 2 * 2**20
# Above it, blocks shrink so that there are at least this many: a thread slowed by other
# work then takes fewer, and the last block's wait is short. The count is fixed, not a
# multiple of the thread count, because the blocks' boundaries decide the weight gradient's
# sums: any thread count must cut the batch the same way (docs/reproducibility.md). Eight is
# four per thread on two cores; with 4 MiB blocks the cap above usually binds first
# (bench_cpu_choices.py, 64x16x32x32 conv, two threads: 13.0 / 13.0 / 12.3 ms with 4 / 8 /
# 16 blocks in all); with 8 MiB blocks four blocks were measured 1.7x slower than eight.
MIN_BLOCKS = 8
# ... but not below this many bytes of columns: each block costs a few Python-level calls.
MIN_BLOCK_BYTES = 2**20


def _plan(n: int, bytes_per_image: int) -> tuple[int, int]:
    """(images per batch block, threads) for a kernel over n images; the block size depends
    on the shapes only, never on the thread count."""
    nb = max(1, min(n, BLOCK_BYTES // max(1, bytes_per_image)))
    if n * bytes_per_image < PARALLEL_MIN_BYTES:
        return nb, 1
    nb = min(nb, max(-(-n // MIN_BLOCKS), MIN_BLOCK_BYTES // bytes_per_image))
    return nb, min(get_num_threads(), -(-n // nb))


def _run_blocks(n: int, nb: int, threads: int, workspace: Callable[[], Any],
                body: Callable[[Any, int, int], Any]) -> list[Any]:
    """``body(ws, n0, size)`` for every batch block ``[n0, n0 + size)`` of n images, on
    ``threads`` threads with a ``workspace()`` each; the results in block order."""
    return map_blocks(-(-n // nb), lambda ws, i: body(ws, i * nb, min(nb, n - i * nb)),
                      threads, workspace)


def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) array -> (N, H, W, C) view (no copy)."""
    return x.transpose(0, 2, 3, 1)


def _new(shape: tuple[int, int, int, int], dtype: np.dtype, channels_last: bool = True,
         fill: float | None = None) -> np.ndarray:
    """A new (N, C, H, W) array that owns its memory, stored channels-last (or NCHW).

    Results are returned as such arrays rather than as transposed views, so that they look
    like any fresh array to the caller (no ``.base``; autograd need not copy them).
    """
    if channels_last:
        N, C, H, W = shape
        isz = np.dtype(dtype).itemsize
        # empty_like(order='K') copies the stride order of its prototype: a zero-size-buffer
        # view with channels-last strides (never read) is enough
        proto = as_strided(np.empty(1, dtype), shape, (H * W * C * isz, isz, W * C * isz, C * isz))
        a = np.empty_like(proto, order="K")
    else:
        a = np.empty(shape, dtype)
    if fill is not None:
        a.fill(fill)
    return a


def _nchw(a: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W): the owning array itself when ``a`` is its transpose."""
    t = a.transpose(0, 3, 1, 2)
    b = a.base
    if (isinstance(b, np.ndarray) and b.base is None and b.shape == t.shape
            and b.strides == t.strides and b.ctypes.data == t.ctypes.data):
        return b
    return t


def _copy_nhwc(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src for (n, H, W, C) arrays, fast also when src is an NCHW array's view.

    Copying NCHW memory into channels-last order reads with a stride of H*W elements; when
    that stride is large, copying 8 channels at a time is several times faster (measured:
    6 ms -> 1.8 ms for 32x64x32x32 float32), for small H*W the plain copy is faster.
    """
    C = src.shape[3]
    if C >= 16 and src.strides[3] >= 2048:
        for c0 in range(0, C, 8):
            dst[..., c0:c0 + 8] = src[..., c0:c0 + 8]
    else:
        dst[...] = src


def _fill_padded(buf: np.ndarray, src: np.ndarray, pads: Pads) -> None:
    """Copy channels-last ``src`` (n, H, W, C) into the interior of ``buf`` (n, Hp, Wp, C).

    The border of ``buf`` is never written here, so it keeps the fill value it was created
    with (0 for convolution, -inf for max pooling). Negative pads crop ``src``.
    """
    pt, pb, pl, pr = pads
    H, W = src.shape[1], src.shape[2]
    sh0, sh1 = max(0, -pt), H - max(0, -pb)
    sw0, sw1 = max(0, -pl), W - max(0, -pr)
    dh0, dw0 = max(0, pt), max(0, pl)
    _copy_nhwc(buf[:, dh0:dh0 + sh1 - sh0, dw0:dw0 + sw1 - sw0, :], src[:, sh0:sh1, sw0:sw1, :])


def _windows(xpad: np.ndarray, kh: int, kw: int, s: tuple[int, int], d: tuple[int, int],
             Ho: int, Wo: int, groups: int = 1) -> np.ndarray:
    """Read-only view (n, Ho, Wo, G, kh, kw, C/G) of all windows of a padded NHWC block."""
    n, _, _, C = xpad.shape
    sn, sh, sw, sc = xpad.strides
    return as_strided(xpad, (n, Ho, Wo, groups, kh, kw, C // groups),
                      (sn, sh * s[0], sw * s[1], sc * (C // groups), sh * d[0], sw * d[1], sc),
                      writeable=False)


def _weight_matrix(w: np.ndarray, groups: int) -> np.ndarray:
    """(K, C/G, kh, kw) -> (G, kh*kw*C/G, K/G): rows in the (i, j, c) order of the columns."""
    K, Cg, kh, kw = w.shape
    return np.ascontiguousarray(
        w.reshape(groups, K // groups, Cg, kh, kw).transpose(0, 3, 4, 2, 1)
    ).reshape(groups, kh * kw * Cg, K // groups)


def _flipped_weight_matrix(w: np.ndarray, groups: int) -> np.ndarray:
    """Weights of the stride-1 transposed conv: (G, kh*kw*K/G, C/G), kernel rotated 180°."""
    K, Cg, kh, kw = w.shape
    return np.ascontiguousarray(
        w.reshape(groups, K // groups, Cg, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 3, 4, 1, 2)
    ).reshape(groups, kh * kw * (K // groups), Cg)


def _gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, groups: int) -> None:
    """out[m, g, :] = a[m, g, :] @ b[g] for every group; a (M, G, k), b (G, k, n), out (M, G, n).

    One BLAS call when G == 1; otherwise one batched matmul over strided views (no copies).
    """
    if groups == 1:
        np.matmul(a[:, 0, :], b[0], out=out[:, 0, :])
    else:
        np.matmul(a.transpose(1, 0, 2), b, out=out.transpose(1, 0, 2))


def _conv_nhwc(src: np.ndarray, pads: Pads, wmat: np.ndarray, kh: int, kw: int,
               s: tuple[int, int], d: tuple[int, int], out: np.ndarray) -> None:
    """Correlate channels-last ``src`` (N, H, W, C) with ``wmat`` into ``out`` (N, Ho, Wo, K).

    im2col of one cache-sized batch block, then one GEMM (per group) written into ``out``.
    """
    N, H, W, C = src.shape
    G = wmat.shape[0]
    _, Ho, Wo, K = out.shape
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    kk = kh * kw
    nb, threads = _plan(N, Ho * Wo * kk * C * src.itemsize)

    def workspace() -> tuple[np.ndarray, np.ndarray]:
        return (np.zeros((nb, Hp, Wp, C), src.dtype),
                np.empty((nb, Ho, Wo, G, kh, kw, C // G), src.dtype))

    def block(ws: tuple[np.ndarray, np.ndarray], n0: int, n: int) -> None:
        xpad, cols = ws
        _fill_padded(xpad[:n], src[n0:n0 + n], pads)
        np.copyto(cols[:n], _windows(xpad[:n], kh, kw, s, d, Ho, Wo, G))
        _gemm(cols[:n].reshape(n * Ho * Wo, G, kk * C // G), wmat,
              out[n0:n0 + n].reshape(n * Ho * Wo, G, K // G), G)

    _run_blocks(N, nb, threads, workspace, block)


def _overlap_free_groups(k: int, s: int, d: int) -> list[tuple[int, int]]:
    """Split kernel offsets 0..k-1 into runs (start, length) whose windows never overlap.

    Offsets i and i' of one run hit distinct input rows for every output position, so a
    whole run can be scattered with one strided (non-self-overlapping) view.
    """
    # positions ho*s + i*d (i in a run of length L) are all distinct when L*d <= s
    run = max(1, s // d)
    return [(i, min(run, k - i)) for i in range(0, k, run)]


def _col2im_block(dcols: np.ndarray, dxpad: np.ndarray, s: tuple[int, int],
                  d: tuple[int, int]) -> None:
    """Scatter-add columns (n, Ho, Wo, G, kh, kw, Cg) into the zeroed padded block dxpad.

    Offsets are grouped into overlap-free runs, so a 3x3 stride-2 kernel takes 4 adds, a 2x2
    stride-2 one a single add; only stride 1 needs one add per offset.
    """
    n, Ho, Wo, G, kh, kw, Cg = dcols.shape
    sn, sh, sw, sc = dxpad.strides
    for i0, li in _overlap_free_groups(kh, s[0], d[0]):
        for j0, lj in _overlap_free_groups(kw, s[1], d[1]):
            base = dxpad[:, i0 * d[0]:, j0 * d[1]:, :]
            view = as_strided(base, (n, Ho, Wo, G, li, lj, Cg),
                              (sn, sh * s[0], sw * s[1], sc * Cg, sh * d[0], sw * d[1], sc))
            view += dcols[:, :, :, :, i0:i0 + li, j0:j0 + lj, :]


# Inputs with at most this many channels per group (images: 1-3) use an offset-major column
# matrix. Channels-last columns of such an input are runs of only kw*C numbers, so im2col
# copies short pieces; offset-major columns are whole shifted images (runs of Wo numbers).
# benchmarks/bench_cpu_choices.py, one thread, batch 64: LeNet's 1->6 5x5 conv forward
# 2.66 -> 1.06 ms, weight gradient 3.06 -> 1.20 ms; a 3->16 3x3 stem 3.28 -> 1.81 and
# 3.68 -> 1.84 ms.
FEW_CHANNELS = 4
# A stride-1 input gradient uses offset-major columns when K >= this many times C
# (bench_cpu_choices.py: LeNet's 6 -> 16 conv 3.26 -> 2.55 ms; at 16 -> 16 it is 2.4x slower).
OFFSET_MAJOR_DX_RATIO = 2


def _offset_windows(xpad: np.ndarray, kh: int, kw: int, s: tuple[int, int],
                    d: tuple[int, int], Ho: int, Wo: int) -> np.ndarray:
    """Read-only view (kh, kw, C, n, Ho, Wo) of all windows of a padded NCHW block."""
    n, C = xpad.shape[:2]
    sn, sc, sh, sw = xpad.strides
    return as_strided(xpad, (kh, kw, C, n, Ho, Wo),
                      (sh * d[0], sw * d[1], sc, sn, sh * s[0], sw * s[1]), writeable=False)


def _offset_major(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                  pads: Pads, dilation: tuple[int, int], out_hw: tuple[int, int],
                  nb: int) -> tuple[Callable[[], Any], Callable[[Any, int, int], np.ndarray]]:
    """(workspace, columns) for offset-major im2col of x (N, C, H, W) in batch blocks.

    ``columns(ws, n0, n)`` returns the (kh*kw*C, n*Ho*Wo) column matrix of images
    [n0, n0 + n): row (i, j, c) holds channel c of every window's tap (i, j).
    """
    _, C, H, W = x.shape
    (kh, kw), (Ho, Wo) = kernel, out_hw
    rows = kh * kw * C

    def workspace() -> tuple[np.ndarray, np.ndarray]:
        return (np.zeros((nb, C, H + pads[0] + pads[1], W + pads[2] + pads[3]), x.dtype),
                np.empty(rows * nb * Ho * Wo, x.dtype))

    def columns(ws: tuple[np.ndarray, np.ndarray], n0: int, n: int) -> np.ndarray:
        xpad, flat = ws
        _fill_padded(_nhwc(xpad[:n]), _nhwc(x[n0:n0 + n]), pads)
        cols = flat[:rows * n * Ho * Wo].reshape(rows, n * Ho * Wo)
        np.copyto(cols.reshape(kh, kw, C, n, Ho, Wo),
                  _offset_windows(xpad[:n], kh, kw, stride, dilation, Ho, Wo))
        return cols

    return workspace, columns


# ---------------------------------------------------------------------------------------------
# 1x1 convolutions (no padding, one group): on channels-last data the image is already the
# (N*H*W, C) matrix im2col would build, so each kernel is one GEMM per batch block on the
# arrays themselves; a stride s reads (and the input gradient writes) every s-th pixel
# (docs/convolution.md, "1x1 convolutions").

def is_pointwise(kernel: tuple[int, int], stride: tuple[int, int], pads: Pads, groups: int,
                 in_hw: tuple[int, int] | None = None,
                 out_hw: tuple[int, int] | None = None) -> bool:
    """Whether a conv is a plain GEMM over (every stride-th) pixel: 1x1, no padding, one
    group (dilation does not matter for a 1x1 kernel); with both sizes given, also that the
    output has one pixel per stride-th input pixel (an input gradient for a transposed
    conv's output_padding may be larger)."""
    if kernel != (1, 1) or any(pads) or groups != 1:
        return False
    return in_hw is None or out_hw is None or all(
        out_size(i, 1, s, 0, 0, 1) == o for i, s, o in zip(in_hw, stride, out_hw))


def _subsample(x: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """Every stride-th pixel of x (N, C, H, W), a view (x itself at stride 1)."""
    return x if stride == (1, 1) else x[:, :, ::stride[0], ::stride[1]]


def _pixel_rows(a: np.ndarray, dtype: np.dtype, nb: int
                ) -> tuple[Callable[[], Any], Callable[[Any, int, int], np.ndarray]]:
    """(workspace, rows) giving images [n0, n0 + n) of a (N, C, H, W) as an (n*H*W, C)
    matrix: a view of a channels-last array, else a copy into the block's workspace."""
    N, C, H, W = a.shape
    t = _nhwc(a)
    if t.dtype == dtype and t.flags.c_contiguous:
        return (lambda: None), (lambda ws, n0, n: t[n0:n0 + n].reshape(n * H * W, C))

    def workspace() -> np.ndarray:
        return np.empty((nb, H, W, C), dtype)

    def rows(ws: np.ndarray, n0: int, n: int) -> np.ndarray:
        _copy_nhwc(ws[:n], t[n0:n0 + n])
        return ws[:n].reshape(n * H * W, C)

    return workspace, rows


def _pointwise(src: np.ndarray, wmat: np.ndarray, out: np.ndarray) -> None:
    """out (N, H, W, K) = src's pixel rows (N*H*W, C) @ wmat (C, K), in batch blocks."""
    N, C, H, W = src.shape
    K = wmat.shape[1]
    nb, threads = _plan(N, H * W * C * wmat.itemsize)
    workspace, rows = _pixel_rows(src, wmat.dtype, nb)

    def block(ws: Any, n0: int, n: int) -> None:
        np.matmul(rows(ws, n0, n), wmat, out=out[n0:n0 + n].reshape(n * H * W, K))

    _run_blocks(N, nb, threads, workspace, block)


def _pointwise_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """1x1 conv: y (N, K, H, W) = x's pixels (N*H*W, C) @ w (K, C)^T (+ b)."""
    N, _, H, W = x.shape
    K = w.shape[0]
    out = _nhwc(_new((N, K, H, W), np.result_type(x, w)))
    _pointwise(x, w.reshape(K, -1).T.astype(out.dtype), out)
    if b is not None:
        out += b
    return _nchw(out)


def _pointwise_grad_input(gy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """dx of a 1x1 conv: dx's pixels (N*H*W, C) = gy's pixels (N*H*W, K) @ w (K, C)."""
    N, K, H, W = gy.shape
    C = w.shape[1]
    dx = _nhwc(_new((N, C, H, W), np.result_type(gy, w)))
    _pointwise(gy, np.ascontiguousarray(w.reshape(K, C), dtype=dx.dtype), dx)
    return _nchw(dx)


def _pointwise_grad_weight(x: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """dw of a 1x1 conv: (K, C, 1, 1) = sum over batch blocks of gy's pixels^T @ x's pixels,
    added in block order."""
    N, C, H, W = x.shape
    K = gy.shape[1]
    dtype = np.result_type(x, gy)
    nb, threads = _plan(N, H * W * (C + K) * np.dtype(dtype).itemsize)
    x_ws, x_rows = _pixel_rows(x, dtype, nb)
    g_ws, g_rows = _pixel_rows(gy, dtype, nb)

    def block(ws: tuple[Any, Any], n0: int, n: int) -> np.ndarray:
        return np.matmul(g_rows(ws[1], n0, n).T, x_rows(ws[0], n0, n))

    acc = np.zeros((K, C), dtype)
    for part in _run_blocks(N, nb, threads, lambda: (x_ws(), g_ws()), block):
        acc += part                 # in block order: the same sum whichever thread ran what
    return acc.reshape(K, C, 1, 1)


# ---------------------------------------------------------------------------------------------
# public kernels (NCHW shapes in, any memory layout; NCHW shapes out, stored channels-last)

def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
                   pads: Pads, dilation: tuple[int, int], groups: int) -> np.ndarray:
    """y = conv(x, w) + b; x (N, C, H, W), w (K, C/G, kh, kw) -> y (N, K, Ho, Wo)."""
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    if is_pointwise((kh, kw), stride, pads, groups):
        return _pointwise_forward(_subsample(x, stride), w, b)
    Ho = out_size(H, kh, stride[0], pads[0], pads[1], dilation[0])
    Wo = out_size(W, kw, stride[1], pads[2], pads[3], dilation[1])
    out = _nhwc(_new((N, K, Ho, Wo), np.result_type(x, w)))
    wmat = _weight_matrix(w, groups).astype(out.dtype, copy=False)
    if groups == 1 and C <= FEW_CHANNELS:
        _conv_few_channels(x.astype(out.dtype, copy=False), wmat[0], (kh, kw), stride, pads,
                           dilation, out)
    else:
        _conv_nhwc(_nhwc(x), pads, wmat, kh, kw, stride, dilation, out)
    if b is not None:
        out += b
    return _nchw(out)


def _conv_few_channels(x: np.ndarray, wmat: np.ndarray, kernel: tuple[int, int],
                       stride: tuple[int, int], pads: Pads, dilation: tuple[int, int],
                       out: np.ndarray) -> None:
    """conv of a few-channel x (N, C, H, W) with wmat (kh*kw*C, K) into out (N, Ho, Wo, K):
    offset-major columns, and a GEMM with the transposed column matrix."""
    N, C = x.shape[:2]
    _, Ho, Wo, K = out.shape
    nb, threads = _plan(N, Ho * Wo * kernel[0] * kernel[1] * C * x.itemsize)
    workspace, columns = _offset_major(x, kernel, stride, pads, dilation, (Ho, Wo), nb)

    def block(ws: Any, n0: int, n: int) -> None:
        np.matmul(columns(ws, n0, n).T, wmat, out=out[n0:n0 + n].reshape(n * Ho * Wo, K))

    _run_blocks(N, nb, threads, workspace, block)


def _gy_rows(gy_t: np.ndarray, gbuf: np.ndarray, n0: int, n: int) -> np.ndarray:
    """Images [n0, n0 + n) of the channels-last gy_t (N, Ho, Wo, K) in gbuf's dtype, as a
    C-contiguous array: gy_t itself when it already is one (conv and batch norm gradients
    are channels-last), else copied into the workspace gbuf."""
    if gy_t.dtype == gbuf.dtype and gy_t.flags.c_contiguous:
        return gy_t[n0:n0 + n]
    _copy_nhwc(gbuf[:n], gy_t[n0:n0 + n])
    return gbuf[:n]


def conv2d_grad_input(gy: np.ndarray, w: np.ndarray, in_hw: tuple[int, int],
                      stride: tuple[int, int], pads: Pads, dilation: tuple[int, int],
                      groups: int) -> np.ndarray:
    """dx of conv2d (= conv_transpose2d of gy); gy (N, K, Ho, Wo) -> dx (N, C, H, W)."""
    N, K, Ho, Wo = gy.shape
    _, Cg, kh, kw = w.shape
    H, W = in_hw
    C = Cg * groups
    dtype = np.result_type(gy, w)
    if is_pointwise((kh, kw), stride, pads, groups, (H, W), (Ho, Wo)):
        if (H, W) == (Ho, Wo):
            return _pointwise_grad_input(gy, w)
        dx = _new((N, C, H, W), dtype, fill=0)   # pixels no output reads get no gradient
        _subsample(dx, stride)[...] = _pointwise_grad_input(gy, w)
        return dx
    (sh, sw), (dh, dw) = stride, dilation
    if sh == 1 and sw == 1 and groups == 1 and OFFSET_MAJOR_DX_RATIO * C <= K:
        return _grad_input_offset_major(gy, w, in_hw, pads, dilation)
    dx = _nhwc(_new((N, C, H, W), dtype))
    # stride 1: dx is the correlation of gy with the flipped kernel, so it is an im2col and
    # one GEMM; no scatter-add at all.
    if sh == 1 and sw == 1:
        fpads = (dh * (kh - 1) - pads[0], H - Ho + pads[0],
                 dw * (kw - 1) - pads[2], W - Wo + pads[2])
        _conv_nhwc(_nhwc(gy), fpads, _flipped_weight_matrix(w, groups).astype(dtype, copy=False),
                   kh, kw, (1, 1), dilation, dx)
        return _nchw(dx)
    # general stride: dcols = gy @ W^T (one GEMM per block), then col2im.
    wmat_t = _weight_matrix(w, groups).astype(dtype, copy=False).transpose(0, 2, 1)
    G, kk = groups, kh * kw
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    # rows/cols of the padded input that no window reaches (floor in out_size) stay zero
    Hp, Wp = max(Hp, (Ho - 1) * sh + dh * (kh - 1) + 1), max(Wp, (Wo - 1) * sw + dw * (kw - 1) + 1)
    nb, threads = _plan(N, Ho * Wo * kk * C * np.dtype(dtype).itemsize)
    gy_t = _nhwc(gy)

    def workspace() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.empty((nb, Ho, Wo, G, kh, kw, Cg), dtype), np.empty((nb, Hp, Wp, C), dtype),
                np.empty((nb, Ho, Wo, K), dtype))

    def block(ws: tuple[np.ndarray, np.ndarray, np.ndarray], n0: int, n: int) -> None:
        dcols, dxpad, gbuf = ws
        g = _gy_rows(gy_t, gbuf, n0, n).reshape(n * Ho * Wo, G, K // G)
        _gemm(g, wmat_t, dcols[:n].reshape(n * Ho * Wo, G, kk * Cg), G)
        dxpad[:n] = 0
        _col2im_block(dcols[:n], dxpad[:n], stride, dilation)
        _crop_into(dx[n0:n0 + n], dxpad[:n], pads)

    _run_blocks(N, nb, threads, workspace, block)
    return _nchw(dx)


def _grad_input_offset_major(gy: np.ndarray, w: np.ndarray, in_hw: tuple[int, int],
                             pads: Pads, dilation: tuple[int, int]) -> np.ndarray:
    """dx of a stride-1, groups-1 conv with fewer input than output channels.

    The flipped-kernel correlation would im2col gy, whose K channels outnumber x's C; here
    the GEMM W (kh*kw*C, K) @ gy^T makes the smaller offset-major columns of dx instead, and
    col2im adds each tap's (C, n, Ho, Wo) slab into an NCHW buffer: kh*kw adds with runs of
    Wo numbers. See OFFSET_MAJOR_DX_RATIO for when it pays.
    """
    N, K, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    H, W = in_hw
    dh, dw = dilation
    dtype = np.result_type(gy, w)
    wmat = _weight_matrix(w, 1)[0].astype(dtype, copy=False)              # (kh*kw*C, K)
    dx = _new((N, C, H, W), dtype, channels_last=False)
    nb, threads = _plan(N, Ho * Wo * kh * kw * C * np.dtype(dtype).itemsize)
    gy_t = _nhwc(gy)
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]

    def workspace() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.empty((nb, Ho, Wo, K), dtype), np.empty(kh * kw * C * nb * Ho * Wo, dtype),
                np.empty((nb, C, Hp, Wp), dtype))

    def block(ws: tuple[np.ndarray, np.ndarray, np.ndarray], n0: int, n: int) -> None:
        gbuf, flat, dxpad = ws
        g = _gy_rows(gy_t, gbuf, n0, n)
        cols = flat[:kh * kw * C * n * Ho * Wo].reshape(kh * kw * C, n * Ho * Wo)
        np.matmul(wmat, g.reshape(n * Ho * Wo, K).T, out=cols)
        taps = cols.reshape(kh, kw, C, n, Ho, Wo)
        pad = dxpad[:n]
        pad[...] = 0
        for i in range(kh):
            for j in range(kw):
                tap = taps[i, j].transpose(1, 0, 2, 3)                       # (n, C, Ho, Wo)
                pad[:, :, i * dh:i * dh + Ho, j * dw:j * dw + Wo] += tap
        _crop_into(_nhwc(dx[n0:n0 + n]), _nhwc(pad), pads)

    _run_blocks(N, nb, threads, workspace, block)
    return dx


def _crop_into(dst: np.ndarray, padded: np.ndarray, pads: Pads) -> None:
    """dst (n, H, W, C) = interior of padded (n, Hp, Wp, C); zero where pads crop the input."""
    pt, _, pl, _ = pads
    H, W = dst.shape[1], dst.shape[2]
    h0, w0 = max(0, pt), max(0, pl)
    dh0, dw0 = max(0, -pt), max(0, -pl)
    hn = min(H - dh0, padded.shape[1] - h0)
    wn = min(W - dw0, padded.shape[2] - w0)
    if dh0 or dw0 or hn < H - dh0 or wn < W - dw0:
        dst[...] = 0
    dst[:, dh0:dh0 + hn, dw0:dw0 + wn, :] = padded[:, h0:h0 + hn, w0:w0 + wn, :]


def conv2d_grad_weight(x: np.ndarray, gy: np.ndarray, kernel: tuple[int, int],
                       stride: tuple[int, int], pads: Pads, dilation: tuple[int, int],
                       groups: int) -> np.ndarray:
    """dw of conv2d; x (N, C, H, W), gy (N, K, Ho, Wo) -> dw (K, C/G, kh, kw)."""
    N, C, H, W = x.shape
    _, K, Ho, Wo = gy.shape
    kh, kw = kernel
    G, Cg, Kg, kk = groups, C // groups, K // groups, kh * kw
    dtype = np.result_type(x, gy)
    if is_pointwise(kernel, stride, pads, groups, (H, W), (Ho, Wo)):
        return _pointwise_grad_weight(_subsample(x, stride), gy)
    if groups == 1 and C <= FEW_CHANNELS:
        return _grad_weight_few_channels(x.astype(dtype, copy=False), gy, kernel, stride, pads,
                                         dilation)
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    nb, threads = _plan(N, Ho * Wo * kk * C * np.dtype(dtype).itemsize)
    x_t, gy_t = _nhwc(x), _nhwc(gy)

    def workspace() -> tuple[np.ndarray, ...]:
        return (np.zeros((nb, Hp, Wp, C), dtype), np.empty((nb, Ho, Wo, G, kh, kw, Cg), dtype),
                np.empty((nb, Ho, Wo, K), dtype))

    def block(ws: tuple[np.ndarray, ...], n0: int, n: int) -> np.ndarray:
        xpad, cols, gbuf = ws
        _fill_padded(xpad[:n], x_t[n0:n0 + n], pads)
        np.copyto(cols[:n], _windows(xpad[:n], kh, kw, stride, dilation, Ho, Wo, G))
        a = cols[:n].reshape(n * Ho * Wo, G, kk * Cg).transpose(1, 2, 0)      # (G, kkCg, M)
        g = _gy_rows(gy_t, gbuf, n0, n).reshape(n * Ho * Wo, G, Kg).transpose(1, 0, 2)
        return np.matmul(a, g)

    acc = np.zeros((G, kk * Cg, Kg), dtype)
    for part in _run_blocks(N, nb, threads, workspace, block):
        acc += part                 # in block order: the same sum whichever thread ran what
    gw = np.empty((K, Cg, kh, kw), dtype)
    np.copyto(gw.reshape(G, Kg, Cg, kh, kw),
              acc.reshape(G, kh, kw, Cg, Kg).transpose(0, 4, 3, 1, 2))
    return gw


def _grad_weight_few_channels(x: np.ndarray, gy: np.ndarray, kernel: tuple[int, int],
                              stride: tuple[int, int], pads: Pads,
                              dilation: tuple[int, int]) -> np.ndarray:
    """dw of a conv with a few-channel x (N, C, H, W), groups 1: offset-major columns times
    gy as an (N*Ho*Wo, K) matrix, summed over batch blocks -> (K, C, kh, kw)."""
    N, C = x.shape[:2]
    _, K, Ho, Wo = gy.shape
    kh, kw = kernel
    nb, threads = _plan(N, Ho * Wo * kh * kw * C * x.itemsize)
    make_columns, columns = _offset_major(x, kernel, stride, pads, dilation, (Ho, Wo), nb)
    gy_t = _nhwc(gy)

    def workspace() -> tuple[Any, np.ndarray]:
        return make_columns(), np.empty((nb, Ho, Wo, K), x.dtype)

    def block(ws: tuple[Any, np.ndarray], n0: int, n: int) -> np.ndarray:
        col_ws, gbuf = ws
        return columns(col_ws, n0, n) @ _gy_rows(gy_t, gbuf, n0, n).reshape(n * Ho * Wo, K)

    acc = np.zeros((kh * kw * C, K), x.dtype)
    for part in _run_blocks(N, nb, threads, workspace, block):
        acc += part                 # in block order, as in conv2d_grad_weight
    return np.ascontiguousarray(acc.reshape(kh, kw, C, K).transpose(3, 2, 0, 1))


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
           dilation: tuple[int, int]) -> np.ndarray:
    """Columns of x (N, C, H, W): array (N, Ho, Wo, kh, kw, C), row-major contiguous.

    ``cols.reshape(N*Ho*Wo, kh*kw*C)`` is the matrix whose row (n, ho, wo) holds the window
    that output pixel sees, ordered kernel row, kernel column, channel.
    """
    N, C, H, W = x.shape
    kh, kw = kernel
    Ho = out_size(H, kh, stride[0], pads[0], pads[1], dilation[0])
    Wo = out_size(W, kw, stride[1], pads[2], pads[3], dilation[1])
    xpad = np.zeros((N, H + pads[0] + pads[1], W + pads[2] + pads[3], C), x.dtype)
    _fill_padded(xpad, _nhwc(x), pads)
    cols = np.empty((N, Ho, Wo, 1, kh, kw, C), x.dtype)
    np.copyto(cols, _windows(xpad, kh, kw, stride, dilation, Ho, Wo))
    return cols.reshape(N, Ho, Wo, kh, kw, C)


def col2im(cols: np.ndarray, in_hw: tuple[int, int], stride: tuple[int, int], pads: Pads,
           dilation: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum columns (N, Ho, Wo, kh, kw, C) back into (N, C, H, W)."""
    N, Ho, Wo, kh, kw, C = cols.shape
    H, W = in_hw
    Hp = max(H + pads[0] + pads[1], (Ho - 1) * stride[0] + dilation[0] * (kh - 1) + 1)
    Wp = max(W + pads[2] + pads[3], (Wo - 1) * stride[1] + dilation[1] * (kw - 1) + 1)
    dxpad = np.zeros((N, Hp, Wp, C), cols.dtype)
    _col2im_block(cols.reshape(N, Ho, Wo, 1, kh, kw, C), dxpad, stride, dilation)
    dx = _nhwc(_new((N, C, H, W), cols.dtype))
    _crop_into(dx, dxpad, pads)
    return _nchw(dx)


# ---------------------------------------------------------------------------------------------
# pooling. The loops below run over the kh*kw kernel offsets only; each step is one vectorised
# op over the part of the (N, Ho, Wo, C) output where that offset falls inside the input, so
# padding is never materialised (no padded copy of the input, no crop of the gradient).
# Pooling is memory-bound: it runs in whatever layout (NCHW or channels-last) its input has.

def _channels_last(x: np.ndarray) -> bool:
    """Whether an (N, C, H, W) array is stored channels-last (C varies fastest)."""
    return x.strides[1] < x.strides[3]


def _alloc_nhwc(shape: tuple[int, int, int, int], dtype: np.dtype, channels_last: bool,
                fill: float | None = None) -> np.ndarray:
    """An (N, H, W, C)-shaped view of a new array stored channels-last or NCHW, as asked."""
    N, H, W, C = shape
    return _nhwc(_new((N, C, H, W), dtype, channels_last, fill))


def _taps(size: int, k: int, s: int, p: int, out: int,
          d: int = 1) -> list[tuple[slice, slice] | None]:
    """For each kernel offset i along one axis: (input slice, output slice) of the outputs
    whose tap i lands inside the input (``out_pos*s + i*d - p`` in [0, size)), or None."""
    taps: list[tuple[slice, slice] | None] = []
    for i in range(k):
        lo = max(0, -((i * d - p) // s))          # ceil((p - i*d) / s)
        hi = min(out - 1, (size - 1 + p - i * d) // s)
        if hi < lo:
            taps.append(None)
            continue
        start = lo * s + i * d - p
        taps.append((slice(start, start + (hi - lo) * s + 1, s), slice(lo, hi + 1)))
    return taps


def _offsets(in_hw: tuple[int, int], out_hw: tuple[int, int], kernel: tuple[int, int],
             stride: tuple[int, int], pads: Pads, dilation: tuple[int, int] = (1, 1)):
    """Yield (offset i*kw + j, input index, output index) for every kernel offset in use."""
    th = _taps(in_hw[0], kernel[0], stride[0], pads[0], out_hw[0], dilation[0])
    tw = _taps(in_hw[1], kernel[1], stride[1], pads[2], out_hw[1], dilation[1])
    for i, a in enumerate(th):
        for j, b in enumerate(tw):
            if a is not None and b is not None:
                yield (i * kernel[1] + j, (slice(None), a[0], b[0]), (slice(None), a[1], b[1]))


# Input bytes per batch block of a pooling op: every kernel offset makes a pass over the block,
# so it should stay in the L2 cache (32x64x32x32 2x2 max pool: 1 MiB blocks are ~2x faster
# than one pass over the whole batch).
POOL_BLOCK_BYTES = 1 * 2**20


def _pool_blocks(big: np.ndarray, body: Callable[..., None], *arrays: np.ndarray) -> None:
    """``body(*blocks)`` for the same batch block of every array, blocks sized by ``big``
    (N, C, H, W); the blocks are shared out among the worker threads."""
    N = big.shape[0]
    nb = max(1, min(N, POOL_BLOCK_BYTES // max(1, big[:1].nbytes)))
    threads = get_num_threads() if big.nbytes >= PARALLEL_MIN_BYTES else 1
    map_blocks(-(-N // nb), lambda _, i: body(*(a[i * nb:(i + 1) * nb] for a in arrays)),
               threads)


def _index_dtype(kk: int) -> np.dtype:
    return np.dtype(np.uint8 if kk <= 256 else np.int32)


def max_pool2d_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       pads: Pads, out_hw: tuple[int, int],
                       dilation: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Max over windows; x (N, C, H, W) -> y (N, C, Ho, Wo) and the argmax offsets.

    The offsets (N, Ho, Wo, C) hold i*kw + j of the winning element of each window. The
    maxima come first (one ``np.maximum`` per offset); the offsets are then found by scanning
    offsets from last to first, so that of equal values the first one is written last: ties
    go to the first maximum in row-major window order. (Two plain passes per offset are
    measured 3x faster than one pass of masked updates.)
    """
    N, C, H, W = x.shape
    best = _alloc_nhwc((N, *out_hw, C), x.dtype, _channels_last(x), -np.inf)
    idx = np.zeros_like(best, dtype=_index_dtype(kernel[0] * kernel[1]))
    mask = np.empty_like(best, dtype=bool)
    offsets = list(_offsets((H, W), out_hw, kernel, stride, pads, dilation))
    def block(xt: np.ndarray, b: np.ndarray, i: np.ndarray, m: np.ndarray) -> None:
        for _, src, dst in offsets:
            np.maximum(b[dst], xt[src], out=b[dst])
        for o, src, dst in reversed(offsets):
            np.equal(xt[src], b[dst], out=m[dst])
            np.copyto(i[dst], o, where=m[dst])

    _pool_blocks(x, block, _nhwc(x), best, idx, mask)
    return _nchw(best), idx


def max_pool2d_backward(gy: np.ndarray, idx: np.ndarray, in_hw: tuple[int, int],
                        kernel: tuple[int, int], stride: tuple[int, int],
                        pads: Pads, dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Route gy (N, C, Ho, Wo) to the argmax of each window -> dx (N, C, H, W)."""
    N, C, Ho, Wo = gy.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    g = _nhwc(gy)
    # Windows that cannot overlap (window extent <= stride) write each input position at
    # most once, so the gradient is written, not added; if they also tile the input exactly,
    # nothing needs zeroing first.
    disjoint = dh * (kh - 1) + 1 <= sh and dw * (kw - 1) + 1 <= sw
    tiles = (disjoint and kh == sh and kw == sw and not any(pads) and dilation == (1, 1)
             and in_hw == (Ho * sh, Wo * sw))
    dx = _alloc_nhwc((N, *in_hw, C), gy.dtype, _channels_last(gy), None if tiles else 0)
    mask = np.empty_like(idx, dtype=bool)
    tmp = np.empty_like(g)
    offsets = list(_offsets(in_hw, (Ho, Wo), kernel, stride, pads, dilation))
    def block(d: np.ndarray, gb: np.ndarray, ib: np.ndarray, m: np.ndarray,
              t: np.ndarray) -> None:
        for o, src, dst in offsets:
            np.equal(ib[dst], o, out=m[dst])
            if disjoint:
                np.multiply(gb[dst], m[dst], out=d[src])
            else:
                np.multiply(gb[dst], m[dst], out=t[dst])
                d[src] += t[dst]

    _pool_blocks(dx, block, dx, g, idx, mask, tmp)
    return _nchw(dx)


def max_pool2d_gather(x: np.ndarray, idx: np.ndarray, kernel: tuple[int, int],
                      stride: tuple[int, int], pads: Pads,
                      dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Pick, in every window of x (N, C, H, W), the element at the saved argmax offsets.

    This is the adjoint of :func:`max_pool2d_backward` (used for double backward).
    """
    N, C, H, W = x.shape
    xt = _nhwc(x)
    out = _alloc_nhwc(idx.shape, x.dtype, _channels_last(x), 0)
    mask = np.empty_like(idx, dtype=bool)
    for o, src, dst in _offsets((H, W), idx.shape[1:3], kernel, stride, pads, dilation):
        np.equal(idx[dst], o, out=mask[dst])
        np.copyto(out[dst], xt[src], where=mask[dst])
    return _nchw(out)


def max_pool2d_indices(idx: np.ndarray, in_hw: tuple[int, int], kernel: tuple[int, int],
                       stride: tuple[int, int], pads: Pads,
                       dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """torch's ``return_indices``: the saved argmax offsets (N, Ho, Wo, C) as flat positions
    ``h*W + w`` in the input plane -> int64 (N, C, Ho, Wo)."""
    off = idx.transpose(0, 3, 1, 2).astype(np.int64)
    Ho, Wo = off.shape[2:]
    h = np.arange(Ho)[:, None] * stride[0] - pads[0] + off // kernel[1] * dilation[0]
    w = np.arange(Wo)[None, :] * stride[1] - pads[2] + off % kernel[1] * dilation[1]
    return h * in_hw[1] + w


def avg_pool2d_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       pads: Pads, out_hw: tuple[int, int], inv_div: np.ndarray) -> np.ndarray:
    """Window sums times ``inv_div`` (Ho, Wo); x (N, C, H, W) -> (N, C, Ho, Wo).

    Batch blocks on the worker threads; each output element's sum runs over the offsets in
    the same order in any block, so the bits do not depend on the blocks or threads."""
    N, C, H, W = x.shape
    acc = _alloc_nhwc((N, *out_hw, C), x.dtype, _channels_last(x))
    offsets = list(_offsets((H, W), out_hw, kernel, stride, pads))
    scale = inv_div[None, :, :, None]

    def block(xt: np.ndarray, a: np.ndarray) -> None:
        a.fill(0)
        for _, src, dst in offsets:
            a[dst] += xt[src]
        a *= scale

    _pool_blocks(x, block, _nhwc(x), acc)
    return _nchw(acc)


def avg_pool2d_backward(gy: np.ndarray, in_hw: tuple[int, int], kernel: tuple[int, int],
                        stride: tuple[int, int], pads: Pads, inv_div: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`avg_pool2d_forward`: spread gy * inv_div over each window (in batch
    blocks on the worker threads, as the forward)."""
    N, C, Ho, Wo = gy.shape
    dx = _alloc_nhwc((N, *in_hw, C), gy.dtype, _channels_last(gy))
    offsets = list(_offsets(in_hw, (Ho, Wo), kernel, stride, pads))
    scale = inv_div[None, :, :, None]

    def block(d: np.ndarray, gb: np.ndarray) -> None:
        g = gb * scale
        d.fill(0)
        for _, src, dst in offsets:
            d[src] += g[dst]

    _pool_blocks(dx, block, dx, _nhwc(gy))
    return _nchw(dx)
