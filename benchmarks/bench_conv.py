"""Speed of conv2d, max_pool2d and batch_norm (forward + backward), as a table.

For each shape the script times, in one run and on the same data:

* minidl's op, forward + backward (best of ``--repeat``), and its GFLOP/s;
* ``numpy.matmul`` on the conv's own forward GEMM, (N*Ho*Wo, C*kh*kw) @ (C*kh*kw, K), written
  into a preallocated output, cut into the batch blocks minidl's forward kernel uses
  (``kernels._numpy._plan``), every block on the same cache-resident rows: the machine's
  float32 GEMM rate where the kernels run theirs;
* ``torch.nn.functional`` on the same data with the same number of threads, when torch is
  importable (it is never a dependency of minidl).

Each framework gets the memory layout it works on inside a network: on the CPU minidl's
feature maps and gradients are channels-last (a first layer reads the data's NCHW), torch's
are NCHW, its default.

Repeats of minidl and torch are interleaved, so that both see the same machine load.

    python benchmarks/bench_conv.py                 # all shapes, CPU, all cores
    python benchmarks/bench_conv.py --threads 1 --cpu-time   # one thread, CPU time
    python benchmarks/bench_conv.py --device cuda   # the same on the GPU (TF32 off)
    python benchmarks/bench_conv.py --quick         # small shapes, a smoke run
    python benchmarks/bench_conv.py --lecture --threads 1 --cpu-time   # LeNet-5, ResNet-20

The "GEMMs alone" column is what the conv's two or three GEMMs (forward, weight gradient,
input gradient: one multiply-add count each) take at the rate ``numpy.matmul`` reaches on the
forward GEMM's own shape: the floor of any im2col convolution built on that BLAS.

``--cpu-time`` times with the process CPU clock instead of the wall clock; with one thread it
measures the work itself, unaffected by other processes competing for the cores (wall times
on a shared machine are not). With several threads it would add up all threads: don't.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from thread_env import apply_threads  # noqa: E402 - before NumPy loads its BLAS

THREADS = apply_threads(minidl_too=True) if __name__ == "__main__" else None

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minidl as md  # noqa: E402
from minidl.backend import blas_info, xp_for  # noqa: E402
from minidl.functional.conv import conv2d  # noqa: E402
from minidl.functional.normalization import batch_norm  # noqa: E402
from minidl.functional.pooling import max_pool2d  # noqa: E402
from minidl.kernels._numpy import _plan  # noqa: E402 - the kernels' batch blocks
from minidl.parallel import blas_threads  # noqa: E402

CLOCK = time.perf_counter

# (N, C, H, W, K, k, stride, padding, needs dx, pool (k, s, p))
SHAPES = [
    (32, 64, 32, 32, 64, 3, 1, 1, True, (2, 2, 0)),
    (64, 3, 224, 224, 64, 7, 2, 3, False, (3, 2, 1)),     # a first layer: no input gradient
    (128, 256, 14, 14, 256, 3, 1, 1, True, (2, 2, 0)),
]
# The convolutions of the lecture networks at batch 64 (benchmarks/bench_models.py's steps):
# LeNet-5's two 5x5 convs, then CIFAR ResNet-20's 3x3 convs at 16, 32 and 64 channels. No
# pool row where the network has no max pool.
LECTURE = [
    (64, 1, 32, 32, 6, 5, 1, 0, False, None),
    (64, 6, 14, 14, 16, 5, 1, 0, True, None),
    (64, 16, 32, 32, 16, 3, 1, 1, True, None),
    (64, 32, 16, 16, 32, 3, 1, 1, True, None),
    (64, 64, 8, 8, 64, 3, 1, 1, True, None),
]
QUICK = [
    (8, 16, 16, 16, 16, 3, 1, 1, True, (2, 2, 0)),
    (4, 3, 32, 32, 8, 7, 2, 3, False, (3, 2, 1)),
]


def _sync(device: str) -> None:
    if device == "cuda":
        xp_for("cuda").cuda.Device().synchronize()


def _torch(device: str) -> Any:
    try:
        import torch  # noqa: PLC0415 - optional, for comparison only
    except ImportError:
        return None
    if device == "cuda":
        if not torch.cuda.is_available():
            return None
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(THREADS or os.cpu_count() or 1)
    return torch


# After a call, OpenBLAS's and torch's OpenMP worker threads spin for up to a few hundred
# milliseconds before they sleep; timed right after them, minidl's worker threads found one
# core taken (the 32x64x32x32 conv, two threads: 91-101 ms interleaved with torch and the
# GEMM reference, 46-58 ms alone). So the timing pauses whenever it switches runtimes.
SETTLE_S = 0.3


def _runtime(name: str) -> str:
    return "torch" if name.startswith("t_") else "blas" if name == "gemm" else "minidl"


def best_times(fns: dict[str, Callable[[], Any]], repeat: int, device: str) -> dict[str, float]:
    """Best wall time of each callable, repeats interleaved, after one warm-up call each."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()
        _sync(device)
    last = None
    for _ in range(repeat):
        for name, fn in fns.items():
            if device == "cpu" and _runtime(name) != last:
                time.sleep(SETTLE_S)
                last = _runtime(name)
            t0 = CLOCK()
            fn()
            _sync(device)
            best[name] = min(best[name], CLOCK() - t0)
    return best


def _channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) with NHWC memory, as minidl's CPU kernels make feature maps."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def bench_shape(shape: tuple, repeat: int, device: str, torch: Any) -> list[dict]:
    N, C, H, W, K, k, s, p, needs_dx, pool = shape
    pk, ps, pp = pool or (2, 2, 0)
    xp = xp_for(device)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w_np = (rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    b_np = rng.standard_normal(K, dtype=np.float32)
    Ho = (H + 2 * p - k) // s + 1
    gy_np = rng.standard_normal((N, K, Ho, Ho), dtype=np.float32)
    # Each framework gets the layout it sees inside a network: on the CPU minidl's kernels
    # leave feature maps and their gradients channels-last (a first layer, needs_dx False,
    # reads the data's NCHW), torch's default is NCHW.
    x = md.tensor(x_np if device == "cuda" or not needs_dx else _channels_last(x_np),
                  device=device, requires_grad=needs_dx)
    w = md.tensor(w_np, device=device, requires_grad=True)
    b = md.tensor(b_np, device=device, requires_grad=True)
    gy = md.tensor(gy_np if device == "cuda" else _channels_last(gy_np), device=device)

    def md_conv() -> None:
        conv2d(x, w, b, s, p).backward(gy)
        x.grad = w.grad = b.grad = None

    # the machine's GEMM rate at the size of this conv's forward GEMM
    a = xp.asarray(rng.standard_normal((N * Ho * Ho, C * k * k), dtype=np.float32))
    bm = xp.asarray(rng.standard_normal((C * k * k, K), dtype=np.float32))
    out = xp.empty((N * Ho * Ho, K), np.float32)

    # On the CPU, the GEMM of each batch block the forward kernel cuts (kernels._numpy._plan:
    # the same images per block), all on the first block's rows: a kernel's GEMM reads a
    # block that its im2col has just written into the cache, not a tall matrix streaming
    # from memory (half the rate at 16 channels). On the GPU, the whole product.
    per_image = Ho * Ho
    images = N if device == "cuda" else _plan(N, per_image * C * k * k * 4)[0]
    block_rows = [min(images, N - n0) * per_image for n0 in range(0, N, images)]

    def gemm() -> None:
        # the machine's rate with every thread (BLAS's own count for plain NumPy code;
        # inside minidl's ops BLAS runs one thread), asked for explicitly
        with blas_threads(THREADS or os.cpu_count() or 1):
            for rows in block_rows:
                xp.matmul(a[:rows], bm, out=out[:rows])

    # pool and BN run on a conv output: its shape, and on CPU its channels-last memory
    y_np = gy_np if device == "cuda" else _channels_last(gy_np)
    yp = md.tensor(y_np, device=device, requires_grad=True)
    Hp = (Ho + 2 * pp - pk) // ps + 1
    gp = md.tensor(rng.standard_normal((N, K, Hp, Hp), dtype=np.float32), device=device)
    gamma = md.tensor(np.ones(K, np.float32), device=device, requires_grad=True)
    beta = md.tensor(np.zeros(K, np.float32), device=device, requires_grad=True)
    rm, rv = md.zeros(K, device=device), md.ones(K, device=device)

    def md_pool() -> None:
        max_pool2d(yp, pk, ps, pp).backward(gp)
        yp.grad = None

    def md_bn() -> None:
        batch_norm(yp, rm, rv, gamma, beta, training=True).backward(gy)
        yp.grad = gamma.grad = beta.grad = None

    fns: dict[str, Callable[[], Any]] = {"gemm": gemm, "conv": md_conv, "pool": md_pool,
                                         "bn": md_bn}
    if torch is not None:
        F = torch.nn.functional
        dev = "cuda" if device == "cuda" else "cpu"
        tx = torch.from_numpy(x_np).to(dev).requires_grad_(needs_dx)
        tw = torch.from_numpy(w_np).to(dev).requires_grad_()
        tb = torch.from_numpy(b_np).to(dev).requires_grad_()
        tgy = torch.from_numpy(gy_np).to(dev)
        ty = torch.from_numpy(gy_np).to(dev).requires_grad_()    # y_np's values, NCHW
        tgp = torch.from_numpy(gp.numpy()).to(dev)
        tgamma = torch.ones(K, device=dev, requires_grad=True)
        tbeta = torch.zeros(K, device=dev, requires_grad=True)
        trm, trv = torch.zeros(K, device=dev), torch.ones(K, device=dev)

        def t_conv() -> None:
            F.conv2d(tx, tw, tb, s, p).backward(tgy)
            tx.grad = tw.grad = tb.grad = None

        def t_pool() -> None:
            F.max_pool2d(ty, pk, ps, pp).backward(tgp)
            ty.grad = None

        def t_bn() -> None:
            F.batch_norm(ty, trm, trv, tgamma, tbeta, training=True).backward(tgy)
            ty.grad = tgamma.grad = tbeta.grad = None

        def t_sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize()

        for name, fn in (("t_conv", t_conv), ("t_pool", t_pool), ("t_bn", t_bn)):
            fns[name] = (lambda fn=fn: (fn(), t_sync()))
    t = best_times(fns, repeat, device)

    fwd_flops = 2 * N * K * Ho * Ho * C * k * k
    conv_flops = fwd_flops * (3 if needs_dx else 2)
    gemm_rate = fwd_flops / t["gemm"] / 1e9
    label = f"{N}x{C}x{H}x{W} K={K} k={k} s={s} p={p}"
    rows = [dict(op="conv2d" + ("" if needs_dx else " (no dx)"), shape=label, ms=t["conv"] * 1e3,
                 gflops=conv_flops / t["conv"] / 1e9, gemm=gemm_rate,
                 gemm_ms=t["gemm"] * (3 if needs_dx else 2) * 1e3,
                 torch_ms=t.get("t_conv", float("nan")) * 1e3)]
    if pool is not None:
        pl = f"{N}x{K}x{Ho}x{Ho} k={pk} s={ps} p={pp}"
        rows.append(dict(op="max_pool2d", shape=pl, ms=t["pool"] * 1e3, gflops=None, gemm=None,
                         torch_ms=t.get("t_pool", float("nan")) * 1e3, conv_ms=t["conv"] * 1e3))
    rows.append(dict(op="batch_norm (train)", shape=f"{N}x{K}x{Ho}x{Ho}", ms=t["bn"] * 1e3,
                     gflops=None, gemm=None, torch_ms=t.get("t_bn", float("nan")) * 1e3,
                     conv_ms=t["conv"] * 1e3))
    return rows


def machine(device: str, torch: Any) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores, {THREADS or os.cpu_count()} threads used",
             f"numpy {np.__version__} ({blas_info()})"]
    if device == "cuda":
        cp = xp_for("cuda")
        parts.append(cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
    try:
        parts.append(f"load average {os.getloadavg()[0]:.2f}")
    except OSError:
        pass
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    ap.add_argument("--lecture", action="store_true",
                    help="the conv layers of LeNet-5 and CIFAR ResNet-20 at batch 64")
    ap.add_argument("--shape", type=int, action="append", default=None,
                    help="run only this row of SHAPES (1-based; may be repeated)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS/torch threads (default: all cores)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process CPU clock (use with --threads 1)")
    args = ap.parse_args(argv)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    torch = None if args.no_torch else _torch(args.device)
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"machine: {machine(args.device, torch)}")
    print(f"command: python benchmarks/bench_conv.py {' '.join(argv or sys.argv[1:])}".rstrip())
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"times: best of {args.repeat} ({clock}), forward + backward, float32\n")
    head = ("| op | shape | minidl ms | GFLOP/s | GEMM GFLOP/s | of GEMM | GEMMs alone ms "
            "| torch ms | minidl/torch |")
    print(head)
    print("|" + "---|" * 9)
    shapes = QUICK if args.quick else LECTURE if args.lecture else SHAPES
    if args.shape:
        shapes = [shapes[i - 1] for i in args.shape]
    for shape in shapes:
        for r in bench_shape(shape, args.repeat, args.device, torch):
            gf = f"{r['gflops']:.0f}" if r["gflops"] else ""
            gm = f"{r['gemm']:.0f}" if r["gemm"] else ""
            of = f"{r['gflops'] / r['gemm']:.0%}" if r["gemm"] else \
                f"{r['ms'] / r['conv_ms']:.0%} of conv"
            tm = r["torch_ms"]
            ratio = f"{r['ms'] / tm:.2f}" if tm == tm else "n/a"
            alone = f"{r['gemm_ms']:.2f}" if "gemm_ms" in r else ""
            print(f"| {r['op']} | {r['shape']} | {r['ms']:.2f} | {gf} | {gm} | {of} | {alone} | "
                  f"{'n/a' if tm != tm else f'{tm:.2f}'} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
