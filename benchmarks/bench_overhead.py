"""Per-op Python overhead of the engine: what one recorded or unrecorded op costs above the
NumPy call it wraps, and what one op of a 200-op elementwise chain costs forward + backward,
against torch in the same run (interleaved rounds, best of them) on tiny arrays, where the
overhead is all there is.

    python benchmarks/bench_overhead.py [--rounds 7] [--size 8] [--ops 200] [--no-torch]

The chain cycles through ``y * w``, ``y + b``, ``tanh(y)`` and ``y - c`` (w, b leaves that
require grad, so each is used ops/4 times and its gradient is summed; c a constant), then
``.sum().backward()``. torch (CPU, one thread) is imported only here, if installed.
"""
from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import minidl as md
import minidl.functional as F


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Best of 3 timings of ``n`` calls of ``fn``, in microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def minidl_chain(size: int = 8, ops: int = 200) -> Callable[[], None]:
    """One forward + backward of the ``ops``-op chain on (size, size) float32 tensors."""
    gen = np.random.default_rng(0)
    x, w, b, c = (gen.standard_normal((size, size)).astype(np.float32) for _ in range(4))
    x, w, b = (md.tensor(a, requires_grad=True) for a in (x, w, b))
    c = md.tensor(c)
    return _chain_runner(x, w, b, [lambda y: y * w, lambda y: y + b, F.tanh, lambda y: y - c],
                         ops)


def _chain_runner(x: Any, w: Any, b: Any, steps: list[Callable[[Any], Any]],
                  ops: int) -> Callable[[], None]:
    """One forward + backward of ``ops`` ops cycling through ``steps`` from x, then the
    leaves' gradients dropped (minidl and torch alike)."""
    def run() -> None:
        y = x
        for i in range(ops):
            y = steps[i % len(steps)](y)
        y.sum().backward()
        x.grad = w.grad = b.grad = None
    return run


def torch_chain(size: int = 8, ops: int = 200) -> Callable[[], None]:
    """The same chain in torch, on the same values."""
    import torch
    gen = np.random.default_rng(0)
    x, w, b, c = (torch.from_numpy(gen.standard_normal((size, size)).astype(np.float32))
                  for _ in range(4))
    for t in (x, w, b):
        t.requires_grad_(True)
    return _chain_runner(x, w, b, [lambda y: y * w, lambda y: y + b, torch.tanh,
                                   lambda y: y - c], ops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the best counts")
    p.add_argument("--size", type=int, default=8, help="the chain's arrays are size x size")
    p.add_argument("--ops", type=int, default=200, help="ops in the chain")
    p.add_argument("--reps", type=int, default=50, help="chain runs per timing")
    p.add_argument("--no-torch", action="store_true", help="skip the torch columns")
    args = p.parse_args()
    try:
        if args.no_torch:
            raise ImportError
        import torch
        torch.set_num_threads(1)
        tc = torch_chain(args.size, args.ops)
    except ImportError:
        torch, tc = None, None
    mc = minidl_chain(args.size, args.ops)
    a = md.randn(8, 8, requires_grad=True)
    b = md.randn(8, 8, requires_grad=True)
    an, bn = a.data, b.data

    def small_graph() -> None:  # 4 ops forward, their backward
        F.tanh(a @ b + a).sum().backward()

    best: dict[str, float] = {}

    def keep(key: str, us: float) -> None:
        best[key] = min(best.get(key, float("inf")), us)

    gc.collect()
    for _ in range(args.rounds):  # interleaved, so that a busy moment hits both frameworks
        keep("raw", per_call_us(lambda: an + bn, 20000))
        keep("recorded", per_call_us(lambda: a + b, 20000))
        with md.no_grad():
            keep("unrecorded", per_call_us(lambda: a + b, 20000))
        keep("graph", per_call_us(small_graph, 2000))
        keep("chain", per_call_us(mc, args.reps) / (args.ops + 1))
        if tc is not None:
            keep("torch chain", per_call_us(tc, args.reps) / (args.ops + 1))
    print(f"# minidl {md.__version__}, numpy {np.__version__}"
          + (f", torch {torch.__version__} (1 thread)" if torch is not None else "")
          + f"; best of {args.rounds} interleaved rounds")
    print("| what | us per call | overhead over NumPy us |")
    print("|---|---|---|")
    print(f"| numpy a + b (8x8) | {best['raw']:.2f} | - |")
    print(f"| minidl a + b, recorded | {best['recorded']:.2f} | "
          f"{best['recorded'] - best['raw']:.2f} |")
    print(f"| minidl a + b, under no_grad | {best['unrecorded']:.2f} | "
          f"{best['unrecorded'] - best['raw']:.2f} |")
    print(f"| tanh(a @ b + a).sum() forward + backward | {best['graph']:.1f} | - |")
    print()
    print(f"| {args.ops}-op chain ({args.size}x{args.size}), forward + backward | us per op |"
          " minidl / torch |")
    print("|---|---|---|")
    ratio = f"{best['chain'] / best['torch chain']:.2f}" if tc is not None else "-"
    print(f"| minidl | {best['chain']:.2f} | {ratio} |")
    if tc is not None:
        print(f"| torch | {best['torch chain']:.2f} | 1.00 |")


if __name__ == "__main__":
    main()
