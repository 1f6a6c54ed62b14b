"""Where the engine's per-op time goes: cProfile of the 200-op elementwise chain of
benchmarks/bench_overhead.py, forward + backward, on tiny arrays (overhead only).

    python benchmarks/profile_overhead.py [--size 8] [--ops 200] [--reps 300] [--top 30]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import minidl_chain  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8, help="the arrays are size x size")
    p.add_argument("--ops", type=int, default=200, help="ops in the chain")
    p.add_argument("--reps", type=int, default=300, help="forward + backward runs profiled")
    p.add_argument("--top", type=int, default=30, help="rows of the profile printed")
    p.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    args = p.parse_args()
    step = minidl_chain(args.size, args.ops)
    step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.reps):
        step()
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(f"# {args.reps} x ({args.ops}-op chain on {args.size}x{args.size} forward + backward): "
          f"{total / args.reps / args.ops * 1e6:.1f} us per op under the profiler")
    stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
