"""The CPU kernel choices, each timed on and off in the same run (A/B, alternating).

Every tunable in ``minidl.kernels._numpy`` and the host-allocator setting in
``minidl.backend`` was chosen by a measurement; this script repeats them:

* offset-major columns for few-channel inputs (``FEW_CHANNELS``): LeNet's 1->6 5x5 conv and
  a 3->16 3x3 stem, forward and weight gradient;
* offset-major input gradient when K >= 2C (``OFFSET_MAJOR_DX_RATIO``): LeNet's 6->16 conv;
* column block size (``BLOCK_BYTES``): the 32x64x32x32 conv and a cifar_resnet20 b64 step;
* the least number of batch blocks (``MIN_BLOCKS``), two threads, wall time;
* glibc heap setting (``MINIDL_MALLOC``): a LeNet-5 b64 step, each setting in a fresh process.

One thread is timed by process CPU time, two by wall time; each figure is the best of
``--repeat`` alternating rounds.

    python benchmarks/bench_cpu_choices.py
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__" and "--child-malloc" not in sys.argv:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minidl as md  # noqa: E402
from minidl.kernels import _numpy as K  # noqa: E402


def ab(variants: dict[str, Callable[[], None]], setup: Callable[[str], None], repeat: int,
       clock: Callable[[], float]) -> dict[str, float]:
    """Best time (ms) of ``fn`` per variant, after ``setup(variant)``, rounds alternating."""
    best = {name: float("inf") for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            setup(name)
            fn()                                   # warm-up under this setting
            t0 = clock()
            fn()
            best[name] = min(best[name], (clock() - t0) * 1e3)
    return best


def conv_fns(N: int, C: int, H: int, Kout: int, k: int, p: int) -> dict[str, Callable[[], None]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((Kout, C, k, k), dtype=np.float32)
    Ho = H + 2 * p - k + 1
    gy = rng.standard_normal((N, Ho, Ho, Kout), dtype=np.float32).transpose(0, 3, 1, 2)
    pads, one = (p, p, p, p), (1, 1)
    return {"forward": lambda: K.conv2d_forward(x, w, None, one, pads, one, 1),
            "dx": lambda: K.conv2d_grad_input(gy, w, (H, H), one, pads, one, 1),
            "dW": lambda: K.conv2d_grad_weight(x, gy, (k, k), one, pads, one, 1)}


def setter(name: str, values: dict[str, object]) -> Callable[[str], None]:
    return lambda variant: setattr(K, name, values[variant])


def row(what: str, times: dict[str, float]) -> None:
    cells = ", ".join(f"{v} {t:.2f}" for v, t in times.items())
    print(f"| {what} | {cells} |", flush=True)


def malloc_child(steps: int) -> None:
    import bench_models as bm

    step, _ = bm.minidl_step(*bm.CASES["lenet5-b64"], "cpu")
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    print(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child-malloc", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_malloc:
        malloc_child(30)
        return
    cpu, wall = time.process_time, time.perf_counter
    md.set_num_threads(1)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, numpy {np.__version__}; "
          f"ms, best of {args.repeat}; one thread by CPU time unless said\n")
    print("| what | times (ms) |\n|---|---|")

    few = setter("FEW_CHANNELS", {"offset-major": 4, "channels-last": 0})
    for label, shape in (("LeNet conv1 1->6 5x5 b64", (64, 1, 32, 6, 5, 0)),
                         ("stem 3->16 3x3 b64", (64, 3, 32, 16, 3, 1))):
        fns = conv_fns(*shape)
        for part in ("forward", "dW"):
            row(f"{label}, {part}",
                ab({"offset-major": fns[part], "channels-last": fns[part]}, few, args.repeat, cpu))

    # ratio 1 forces the offset-major path where the default (2) would not take it
    for label, shape, ratio in (("LeNet conv2 6->16 5x5 b64, dx", (64, 6, 14, 16, 5, 0), 2),
                                ("16->16 3x3 b64, dx", (64, 16, 32, 16, 3, 1), 1)):
        dx = setter("OFFSET_MAJOR_DX_RATIO", {"offset-major": ratio, "flipped correlation": 10**9})
        fn = conv_fns(*shape)["dx"]
        row(label, ab({"offset-major": fn, "flipped correlation": fn}, dx, args.repeat, cpu))
    K.OFFSET_MAJOR_DX_RATIO = 2

    import bench_models as bm

    blocks = setter("BLOCK_BYTES", {"8 MiB": 8 * 2**20, "4 MiB": 4 * 2**20, "2 MiB": 2**21})
    fns = conv_fns(32, 64, 32, 64, 3, 1)

    def conv() -> None:
        for fn in fns.values():
            fn()

    step, _ = bm.minidl_step(*bm.CASES["cifar_resnet20-b64"], "cpu")
    row("32x64x32x32 conv fwd+dx+dW, BLOCK_BYTES",
        ab({"8 MiB": conv, "4 MiB": conv, "2 MiB": conv}, blocks, args.repeat, cpu))
    row("cifar_resnet20 b64 step, BLOCK_BYTES",
        ab({"8 MiB": step, "4 MiB": step, "2 MiB": step}, blocks, max(2, args.repeat // 2), cpu))
    blocks("4 MiB")

    md.set_num_threads(2)
    fns = conv_fns(64, 16, 32, 16, 3, 1)
    least = setter("MIN_BLOCKS", {"4": 4, "8": 8, "16": 16})
    row("64x16x32x32 conv fwd+dx+dW, two threads (wall), MIN_BLOCKS",
        ab({"4": conv, "8": conv, "16": conv}, least, args.repeat, wall))
    least("8")

    medians: dict[str, list[float]] = {"MINIDL_MALLOC=1": [], "MINIDL_MALLOC=0": []}
    for _ in range(max(2, args.repeat // 2)):
        for name in medians:
            env = dict(os.environ, MINIDL_MALLOC=name[-1], MINIDL_NUM_THREADS="1",
                       OPENBLAS_NUM_THREADS="1")
            out = subprocess.run([sys.executable, __file__, "--child-malloc"], env=env,
                                 capture_output=True, text=True, check=True).stdout
            medians[name].append(float(out.strip().splitlines()[-1]))
    row("LeNet-5 b64 step (median of 30 steps, fresh process each)",
        {name: min(v) for name, v in medians.items()})


if __name__ == "__main__":
    main()
