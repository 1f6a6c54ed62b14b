"""What sharing work out among minidl's worker threads costs and buys, by the size of the work.

Three tables, each at one and at two threads (``--threads``; wall time, median of
``--repeat`` calls):

* ``map_blocks`` of 5 blocks that do nothing, and of 5 independent in-place adds of 256 KiB,
  1 MiB and 4 MiB each: the hand-out's own cost, and the block size from which a second
  thread pays;
* ``parallel.matmul`` of the MLP's and two larger products cut into 1, 2, 4 and 8 blocks
  (``parallel.MATMUL_BLOCKS`` patched): what each cut costs on one thread (every block packs
  the shared operand again) and buys on two; ``parallel.matmul_blocks`` picks the count;
* ``numpy.matmul`` of the same products with BLAS's own threads (``parallel.blas_threads``),
  for comparison (minidl does not use it: it need not give the bits of one thread);
* ``parallel.elementwise`` against one whole-array call, by block size (the
  ``ELEMENTWISE_*_BYTES`` settings patched): add + ReLU + mask on one layout, and tanh's
  gradient on mixed layouts.

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --repeat 50     # quicker
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"          # before NumPy loads its BLAS: minidl sets it per call

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minidl import parallel  # noqa: E402
from minidl.backend import blas_info  # noqa: E402

PRODUCTS = [(128, 784, 512), (128, 512, 512), (512, 128, 784), (256, 784, 512),
            (1024, 1024, 1024)]


def median_us(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def dispatch_rows(repeat: int) -> list[str]:
    rows = ["| 5 blocks of | 1 thread us | 2 threads us | 2 threads / 1 |", "|---|---|---|---|"]

    def nothing(_: None, i: int) -> None:
        return None

    cases: list[tuple[str, Callable[[None, int], None]]] = [("nothing", nothing)]
    for size in (2**16, 2**18, 2**20):               # float32 elements: 256 KiB, 1 MiB, 4 MiB
        arrays = [np.ones(size, np.float32) for _ in range(5)]

        def add(_: None, i: int, arrays: list[np.ndarray] = arrays) -> None:
            np.add(arrays[i], 1, out=arrays[i])

        cases.append((f"an add over {size * 4 // 1024} KiB", add))
    for name, fn in cases:
        t = [median_us(lambda n=n, fn=fn: parallel.map_blocks(5, fn, n), repeat) for n in (1, 2)]
        rows.append(f"| {name} | {t[0]:.1f} | {t[1]:.1f} | {t[1] / t[0]:.2f} |")
    return rows


def _cut_times(a: np.ndarray, b: np.ndarray, repeat: int) -> list[float]:
    """ms of ``parallel.matmul(a, b)`` cut into exactly 1, 2, 4 and 8 blocks."""
    saved = parallel.MATMUL_BLOCKS, parallel.MATMUL_MIN_WORK, parallel.MATMUL_BLOCK_WORK
    times = []
    try:
        for blocks in (1, 2, 4, 8):
            parallel.MATMUL_BLOCKS, parallel.MATMUL_MIN_WORK = blocks, 0
            parallel.MATMUL_BLOCK_WORK = 1
            times.append(median_us(lambda: parallel.matmul(a, b), repeat) / 1e3)
    finally:
        parallel.MATMUL_BLOCKS, parallel.MATMUL_MIN_WORK, parallel.MATMUL_BLOCK_WORK = saved
    return times


def _blas_own_ms(a: np.ndarray, b: np.ndarray, threads: int, repeat: int) -> float:
    def product() -> None:
        with parallel.blas_threads(threads):
            np.matmul(a, b)

    return median_us(product, repeat) / 1e3


def matmul_rows(repeat: int) -> list[str]:
    rows = ["| product (m, k, n) | blocks chosen | threads | 1 block ms | 2 | 4 | 8 "
            "| BLAS's own threads ms |", "|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    before = parallel.get_num_threads()
    try:
        for m, k, n in PRODUCTS:
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((n, k), dtype=np.float32).T    # as F.linear's w.T
            for threads in (1, 2):
                parallel.set_num_threads(threads)
                times = _cut_times(a, b, repeat)
                rows.append(f"| ({m}, {k}, {n}) | {parallel.matmul_blocks(m, k, n)} | "
                            f"{threads} | " + " | ".join(f"{t:.3f}" for t in times)
                            + f" | {_blas_own_ms(a, b, threads, repeat):.3f} |")
    finally:
        parallel.set_num_threads(before)
    return rows


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _add_relu_mask(a: np.ndarray, b: np.ndarray, y: np.ndarray, m: np.ndarray) -> None:
    np.add(a, b, out=y)
    np.maximum(y, 0, out=y)
    np.greater(y, 0, out=m)


def _tanh_grad(gy: np.ndarray, y: np.ndarray, g: np.ndarray) -> None:
    t = np.multiply(y, y)
    np.subtract(1, t, out=t)
    np.multiply(gy, t, out=g)


def elementwise_rows(repeat: int) -> list[str]:
    """``parallel.elementwise`` against one whole-array call, by block size: ResNet-20's
    add + ReLU + mask on one layout (flat blocks), and tanh's gradient with gy NCHW and y
    channels-last, as in LeNet-5 (row blocks)."""
    rng = np.random.default_rng(0)

    def data(shape: tuple[int, ...]) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    a, b = _channels_last(data((64, 16, 32, 32))), _channels_last(data((64, 16, 32, 32)))
    cases = [("add + ReLU + mask, (64, 16, 32, 32) channels-last", "ELEMENTWISE_BLOCK_BYTES",
              _add_relu_mask, (np.float32, bool), (a, b))]
    for shape in ((256, 6, 28, 28), (256, 16, 10, 10)):
        cases.append((f"tanh gradient, gy NCHW and y channels-last {shape}",
                      "ELEMENTWISE_ROW_BYTES", _tanh_grad, (np.float32,),
                      (data(shape), _channels_last(np.tanh(data(shape))))))
    sizes = (2**18, 2**19, 2**20)
    rows = ["| computation | threads | whole ms | 256 KiB blocks | 512 KiB | 1 MiB |",
            "|---|---|---|---|---|---|"]
    saved = {name: getattr(parallel, name) for name in
             ("ELEMENTWISE_MIN_BYTES", "ELEMENTWISE_BLOCK_BYTES", "ELEMENTWISE_ROW_BYTES")}
    before = parallel.get_num_threads()
    try:
        for label, knob, fn, dtypes, arrays in cases:
            outs = tuple(np.empty_like(arrays[0], dtype=dt) for dt in dtypes)
            for threads in (1, 2):
                parallel.set_num_threads(threads)
                whole = median_us(lambda fn=fn, arrays=arrays, outs=outs: fn(*arrays, *outs),
                                  repeat) / 1e3
                cut = []
                for size in sizes:
                    parallel.ELEMENTWISE_MIN_BYTES = 0
                    setattr(parallel, knob, size)
                    cut.append(median_us(lambda fn=fn, dtypes=dtypes, arrays=arrays:
                                         parallel.elementwise(fn, dtypes, *arrays),
                                         repeat) / 1e3)
                    for name, value in saved.items():
                        setattr(parallel, name, value)
                rows.append(f"| {label} | {threads} | {whole:.2f} | "
                            + " | ".join(f"{t:.2f}" for t in cut) + " |")
    finally:
        for name, value in saved.items():
            setattr(parallel, name, value)
        parallel.set_num_threads(before)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__} ({blas_info()})")
    print(f"command: python benchmarks/bench_threads.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"times: median of {args.repeat} calls, wall time\n")
    print("\n".join(dispatch_rows(args.repeat)))
    print()
    print("\n".join(matmul_rows(max(10, args.repeat // 4))))
    print()
    print("\n".join(elementwise_rows(max(10, args.repeat // 4))))


if __name__ == "__main__":
    main()
