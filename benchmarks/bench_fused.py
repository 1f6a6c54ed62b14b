"""The fused Functions and the 1x1 GEMM path against what they replace, in the same run.

Each case times forward + backward (float32, channels-last activations as convolutions
leave them), alternating the two variants for ``--rounds`` rounds and keeping each one's
best round:

* batch norm + ReLU: ``batch_norm_relu`` against ``relu(batch_norm(x))``;
* residual add + ReLU: ``add_relu`` against ``relu(a + b)``;
* 1x1 convolution (forward and both gradients): the GEMM kernels against the im2col ones
  (the same kernels with ``kernels._numpy.is_pointwise`` answering False).

    python benchmarks/bench_fused.py --threads 1 --cpu-time
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

BN_SHAPES = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8)]
PW_SHAPES = [  # (N, C, H, W, K, stride)
    (64, 64, 16, 16, 256, 1), (64, 256, 16, 16, 64, 1), (64, 16, 32, 32, 64, 1),
    (128, 64, 32, 32, 128, 2)]


def _channels_last(a: Any) -> Any:
    import numpy as np
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def bn_relu_case(shape: tuple[int, ...]) -> tuple[Callable[[], None], Callable[[], None]]:
    import numpy as np

    import minidl as md
    import minidl.functional as F
    from minidl.functional.fused import batch_norm_relu
    rng = np.random.default_rng(0)
    x = md.tensor(_channels_last(rng.standard_normal(shape).astype(np.float32)),
                  requires_grad=True)
    g, b = md.ones(shape[1], requires_grad=True), md.zeros(shape[1], requires_grad=True)
    gy = md.tensor(_channels_last(rng.standard_normal(shape).astype(np.float32)))
    rm, rv = md.zeros(shape[1]), md.ones(shape[1])

    def fused() -> None:
        batch_norm_relu(x, rm, rv, g, b, training=True).backward(gy)

    def unfused() -> None:
        F.relu(F.batch_norm(x, rm, rv, g, b, training=True)).backward(gy)

    return fused, unfused


def add_relu_case(shape: tuple[int, ...]) -> tuple[Callable[[], None], Callable[[], None]]:
    import numpy as np

    import minidl as md
    import minidl.functional as F
    from minidl.functional.fused import add_relu
    rng = np.random.default_rng(0)
    a, b, gy = (md.tensor(_channels_last(rng.standard_normal(shape).astype(np.float32)),
                          requires_grad=i < 2) for i in range(3))

    def fused() -> None:
        add_relu(a, b).backward(gy)

    def unfused() -> None:
        F.relu(a + b).backward(gy)

    return fused, unfused


def pointwise_case(spec: tuple[int, ...]) -> tuple[Callable[[], None], Callable[[], None]]:
    import numpy as np

    from minidl import kernels
    from minidl.kernels import _numpy
    N, C, H, W, K, s = spec
    rng = np.random.default_rng(0)
    x = _channels_last(rng.standard_normal((N, C, H, W)).astype(np.float32))
    w = rng.standard_normal((K, C, 1, 1)).astype(np.float32)
    Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
    gy = _channels_last(rng.standard_normal((N, K, Ho, Wo)).astype(np.float32))
    args = ((s, s), (0, 0, 0, 0), (1, 1), 1)
    check = _numpy.is_pointwise

    def run() -> None:
        kernels.conv2d_forward(x, w, None, *args)
        kernels.conv2d_grad_input(gy, w, (H, W), *args)
        kernels.conv2d_grad_weight(x, gy, (1, 1), *args)

    def im2col() -> None:
        _numpy.is_pointwise = lambda *a: False
        try:
            run()
        finally:
            _numpy.is_pointwise = check

    return run, im2col


def best(fn: Callable[[], None], clock: Callable[[], float], repeats: int) -> float:
    """Median of ``repeats`` timed calls after one warm-up, in ms."""
    fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return 1e3 * sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by process CPU time (use with --threads 1)")
    args = ap.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (process time sums all threads)")
    if args.threads is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        from minidl import parallel
        parallel.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    cases = ([(f"batch norm + ReLU {s}", bn_relu_case(s), ("fused", "bn, relu"))
              for s in BN_SHAPES]
             + [(f"add + ReLU {s}", add_relu_case(s), ("fused", "add, relu")) for s in BN_SHAPES]
             + [(f"1x1 conv {p[:4]} -> {p[4]}, stride {p[5]}", pointwise_case(p),
                 ("GEMM", "im2col")) for p in PW_SHAPES])
    print(f"# clock: {'process CPU time' if args.cpu_time else 'wall time'}, threads "
          f"{args.threads or 'default'}; forward + backward, best of {args.rounds} rounds\n")
    print("| case | new (ms) | old (ms) | new / old |\n|---|---|---|---|")
    for name, (new, old), (a, b) in cases:
        t_new = t_old = float("inf")
        for _ in range(args.rounds):     # alternate, so that load hits both alike
            t_new = min(t_new, best(new, clock, args.repeats))
            t_old = min(t_old, best(old, clock, args.repeats))
        print(f"| {name} ({a} / {b}) | {t_new:.2f} | {t_old:.2f} | {t_new / t_old:.2f} |")


if __name__ == "__main__":
    main()
