"""Whole training steps of two minidl source trees and PyTorch, interleaved in one run.

Runs ``bench_models.py``'s child processes (the same step, timing and memory), for each
case and round in turn: minidl from ``--base`` (a source tree holding ``minidl/``, e.g.
``git archive REV minidl | tar -x -C DIR``), minidl from this checkout, and torch (skipped
with ``--no-torch`` or when it is not installed). The best round of each is kept, so that
load from other processes hits all three alike; the table gives the ratios.

    python benchmarks/bench_compare.py --base /tmp/minidl-before --threads 1 --cpu-time
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(framework: str, tree: Path, case: str, args: argparse.Namespace) -> dict | None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "MINIDL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, str(HERE / "bench_models.py"), "--child", framework, "--cases",
           case, "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads",
           str(args.threads)] + (["--cpu-time"] if args.cpu_time else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode:
        print(f"# {framework} ({tree}) {case}: {res.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, type=Path,
                    help="source tree with the minidl package to compare against")
    ap.add_argument("--cases", default="lenet5-b64,lenet5-b256,cifar_resnet20-b64,"
                    "cifar_resnet20-b128", help="comma-separated, from bench_models.py")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by process CPU time (needs --threads 1)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (process time sums all threads)")
    if not (args.base / "minidl" / "__init__.py").exists():
        ap.error(f"--base {args.base} holds no minidl/__init__.py")
    sides = [("before", "minidl", args.base.resolve()), ("after", "minidl", HERE.parent)]
    if not args.no_torch and importlib.util.find_spec("torch") is not None:
        sides.append(("torch", "torch", HERE.parent))
    best: dict[tuple[str, str], float] = {}
    cases = [c for c in args.cases.split(",") if c]
    print(f"# {'process CPU time' if args.cpu_time else 'wall time'}, {args.threads} "
          f"thread(s), {args.rounds} interleaved rounds of {args.repeats} steps (median), "
          "best round kept")
    for case in cases:
        for r in range(args.rounds):
            for name, framework, tree in sides:
                out = run(framework, tree, case, args)
                if out is not None:
                    key = (case, name)
                    best[key] = min(best.get(key, float("inf")), out["step_ms"])
                    print(f"# {case} round {r} {name}: {out['step_ms']:.2f} ms, load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
    names = [s[0] for s in sides]
    head = " | ".join(f"{n} (ms)" for n in names)
    ratios = ["after / before"] + [f"{n} / torch" for n in ("before", "after") if "torch" in names]
    print(f"\n| case | {head} | {' | '.join(ratios)} |")
    print("|---" * (1 + len(names) + len(ratios)) + "|")
    for case in cases:
        t = {n: best.get((case, n), float("nan")) for n in names}
        cells = [f"{t[n]:.1f}" for n in names] + [f"{t['after'] / t['before']:.2f}"]
        if "torch" in names:
            cells += [f"{t['before'] / t['torch']:.2f}", f"{t['after'] / t['torch']:.2f}"]
        print(f"| {case} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
