"""Per-op Python overhead of the engine: what one recorded or unrecorded op costs above the
NumPy call it wraps, measured in the same run on tiny arrays (where overhead dominates).

    python benchmarks/bench_overhead.py
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import minidl as md
import minidl.functional as F


def per_call_us(fn: Callable[[], object], n: int = 20000) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    a = md.randn(8, 8, requires_grad=True)
    b = md.randn(8, 8, requires_grad=True)
    an, bn = a.data, b.data
    raw = per_call_us(lambda: an + bn)
    recorded = per_call_us(lambda: a + b)
    with md.no_grad():
        unrecorded = per_call_us(lambda: a + b)

    def small_graph() -> None:  # 4 ops forward, their backward
        F.tanh(a @ b + a).sum().backward()

    graph = per_call_us(small_graph, n=2000)
    print(f"# minidl {md.__version__}, numpy {np.__version__}")
    print("| what | us per call | overhead over NumPy us |")
    print("|---|---|---|")
    print(f"| numpy a + b (8x8) | {raw:.2f} | - |")
    print(f"| minidl a + b, recorded | {recorded:.2f} | {recorded - raw:.2f} |")
    print(f"| minidl a + b, under no_grad | {unrecorded:.2f} | {unrecorded - raw:.2f} |")
    print(f"| tanh(a @ b + a).sum() forward + backward | {graph:.1f} | - |")


if __name__ == "__main__":
    main()
