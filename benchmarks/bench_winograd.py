"""Would Winograd F(2x2, 3x3) make minidl's 3x3 convolutions faster on the CPU? Measured.

Winograd's F(2x2, 3x3) computes each 2x2 output tile of a 3x3 stride-1 convolution from a 4x4
input tile with 16 multiplies per (input, output) channel pair instead of 36: 2.25x fewer
multiply-adds. In NumPy it is three stages per block of images, all on channels-last data:

1. input transform ``V = B^T d B`` of every 4x4 tile (stride 2), as 8 + 16 whole-array adds
   and subtracts on strided views (no Python loop over tiles or pixels);
2. 16 independent GEMMs, ``M[p] = V[p] @ U[p]`` with ``V[p]`` (tiles, C) and ``U[p]`` (C, K),
   where ``U = G g G^T`` is the transformed weight;
3. output transform ``Y = A^T M A``, written into the four interleaved 2x2 positions.

This script times that (best block size of 2-16 images) against minidl's own im2col kernel
(``minidl.kernels._numpy.conv2d_forward``, forward only) on the 3x3 shapes of CIFAR ResNet-20
and two wider layers, at one thread by process CPU time, and reports the largest error of
each against a float64 computation. It is a measurement, not a kernel minidl uses: on the
lecture networks' 16-64 channels the transforms (memory-bound, six to eight passes over
tile-sized arrays) and 16 GEMMs with an inner size of C cost more than the 2.25x saved
(docs/benchmarks.md, "Why no Winograd").

    python benchmarks/bench_winograd.py
    python benchmarks/bench_winograd.py --repeat 5     # fewer repeats, a smoke run
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MINIDL_NUM_THREADS"):
    os.environ[_var] = "1"          # before NumPy loads its BLAS

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minidl.backend import blas_info  # noqa: E402
from minidl.kernels import _numpy as kernels  # noqa: E402

# (N, C, H, K): 3x3 convs, stride 1, padding 1
SHAPES = [
    (64, 16, 32, 16),       # CIFAR ResNet-20, stage 1
    (64, 32, 16, 32),       # stage 2
    (64, 64, 8, 64),        # stage 3
    (32, 64, 32, 64),       # VGG / ResNet-18 stem width at 32x32
    (32, 256, 14, 256),     # a wide layer (ResNet-18/34 stage 3 width)
]
BLOCKS = (2, 4, 8, 16)

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def weight_transform(w: np.ndarray) -> np.ndarray:
    """(K, C, 3, 3) -> U (16, C, K), computed in float64 and rounded once to w's dtype."""
    u = np.einsum("ai,kcij,bj->abck", G, w.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(16, w.shape[1], w.shape[0]).astype(w.dtype))


def winograd_block(xpad: np.ndarray, u: np.ndarray, y: np.ndarray) -> None:
    """One block: xpad (n, H+2, W+2, C) channels-last, H and W even -> y (n, H, W, K)."""
    n, hp, wp, c = xpad.shape
    th, tw, k = (hp - 2) // 2, (wp - 2) // 2, u.shape[2]
    d = [xpad[:, j:j + 2 * th:2] for j in range(4)]            # tile rows 0..3
    rows = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]  # B^T d
    v = np.empty((16, n, th, tw, c), xpad.dtype)
    for i, r in enumerate(rows):                                  # (B^T d) B, column by column
        e = [r[:, :, j:j + 2 * tw:2] for j in range(4)]
        np.subtract(e[0], e[2], out=v[4 * i])
        np.add(e[1], e[2], out=v[4 * i + 1])
        np.subtract(e[2], e[1], out=v[4 * i + 2])
        np.subtract(e[1], e[3], out=v[4 * i + 3])
    m = np.matmul(v.reshape(16, -1, c), u).reshape(4, 4, n, th, tw, k)
    cols = (m[:, 0] + m[:, 1] + m[:, 2], m[:, 1] - m[:, 2] - m[:, 3])  # M A
    for j, s in enumerate(cols):                                       # A^T (M A)
        y[:, 0::2, j::2] = s[0] + s[1] + s[2]
        y[:, 1::2, j::2] = s[1] - s[2] - s[3]


def winograd_conv(x_nhwc: np.ndarray, w: np.ndarray, block: int) -> np.ndarray:
    """3x3, stride 1, padding 1: x (N, H, W, C) -> (N, H, W, K), ``block`` images at a time."""
    n, h, wd, c = x_nhwc.shape
    u = weight_transform(w)
    xpad = np.zeros((n, h + 2, wd + 2, c), x_nhwc.dtype)
    xpad[:, 1:-1, 1:-1] = x_nhwc
    y = np.empty((n, h, wd, w.shape[0]), x_nhwc.dtype)
    for n0 in range(0, n, block):
        winograd_block(xpad[n0:n0 + block], u, y[n0:n0 + block])
    return y


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"machine: {os.cpu_count()} cores, 1 thread used; numpy {np.__version__} "
          f"({blas_info()})")
    print(f"command: python benchmarks/bench_winograd.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"times: best of {args.repeat}, process CPU time, forward only, float32\n")
    print("| N x C x H x W, K | im2col ms | Winograd ms (best block) | Winograd / im2col "
          "| max error im2col | max error Winograd |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n, c, h, k in SHAPES:
        x = rng.standard_normal((n, h, h, c), dtype=np.float32)
        w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        x_nchw = x.transpose(0, 3, 1, 2)          # channels-last memory, as between layers

        def im2col(x_nchw: np.ndarray = x_nchw, w: np.ndarray = w) -> np.ndarray:
            return kernels.conv2d_forward(x_nchw, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)

        exact = kernels.conv2d_forward(x_nchw.astype(np.float64), w.astype(np.float64), None,
                                       (1, 1), (1, 1, 1, 1), (1, 1), 1).transpose(0, 2, 3, 1)
        err_im2col = float(np.abs(im2col().transpose(0, 2, 3, 1) - exact).max())
        err_winograd = float(np.abs(winograd_conv(x, w, 8) - exact).max())
        t_im2col = best_ms(im2col, args.repeat)
        t_wino, block = min((best_ms(lambda b=b, x=x, w=w: winograd_conv(x, w, b), args.repeat), b)
                            for b in BLOCKS)
        print(f"| {n}x{c}x{h}x{h}, {k} | {t_im2col:.2f} | {t_wino:.2f} ({block}) | "
              f"{t_wino / t_im2col:.2f} | {err_im2col:.1e} | {err_winograd:.1e} |", flush=True)


if __name__ == "__main__":
    main()
