"""What determinism costs: whole training steps of this tree against an earlier revision.

Each (revision, case, thread count) runs in its own subprocess: ``git archive REV minidl``
is unpacked into a temporary folder and put first on that child's ``PYTHONPATH``. The two
revisions alternate for ``--rounds`` rounds, and the best round's median step is kept, so
that load from other processes hits both alike (the ratio is the figure to read on a shared
machine). Each child also prints a digest of the weights after its fixed number of steps from
a seeded model: the "same bits" columns say whether every thread count gave the same weights.

    python benchmarks/bench_determinism.py --baseline e6ee07e
    python benchmarks/bench_determinism.py --baseline e6ee07e --cases lenet5-b64 --threads 1,2,8
    python benchmarks/bench_determinism.py --baseline e6ee07e --threads 1 --openblas-threads 1 \
        --cpu-time
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

CASES = {  # name: bench_models case, or ("mlp", batch) for a model of large linear layers
    "lenet5-b64": "lenet5-b64",
    "cifar_resnet20-b64": "cifar_resnet20-b64",
    "mlp-b256": ("mlp", 256),
}


def _mlp_step(batch: int):
    """784-2048-2048-10 MLP with ReLU, SGD with momentum: products big enough to be cut."""
    import minidl as md
    import minidl.functional as F
    from minidl import nn, optim
    md.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                          nn.Linear(2048, 10))
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = md.tensor(rng.integers(0, 10, batch))

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step, model


def child(case: str, steps: int, warmup: int, cpu_time: bool) -> None:
    """Time ``steps`` steps after ``warmup`` (wall or process CPU time); print JSON with the
    median and a digest."""
    spec = CASES[case]
    if isinstance(spec, tuple):
        step, model = _mlp_step(spec[1])
    else:
        import bench_models as bm

        import minidl as md
        holder: dict = {}
        real_model = bm.minidl_model

        def keep(key: str):             # the step builds the model; keep it for the digest
            holder["model"] = real_model(key)
            return holder["model"]

        bm.minidl_model = keep
        md.manual_seed(0)
        step, _ = bm.minidl_step(*bm.CASES[spec], "cpu")
        model = holder["model"]
    for _ in range(warmup):
        step()
    clock = time.process_time if cpu_time else time.perf_counter
    times = []
    for _ in range(steps):
        t0 = clock()
        step()
        times.append(clock() - t0)
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.numpy().tobytes())
    print(json.dumps({"ms": 1e3 * float(np.median(times)), "digest": digest.hexdigest()[:16]}))


def unpack(rev: str, into: Path) -> Path:
    """The ``minidl`` package of revision ``rev`` unpacked under ``into``; returns ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "minidl"],
                             capture_output=True, check=True).stdout
    tar_path = into / "minidl.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into


def run(tree: Path, case: str, threads: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ, MINIDL_NUM_THREADS=str(threads), PYTHONPATH=str(tree))
    env.pop("OPENBLAS_NUM_THREADS", None)          # BLAS at its default, as users run it
    if args.openblas_threads:
        env["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)
    out = subprocess.run([sys.executable, __file__, "--child", case, "--steps", str(args.steps),
                          "--warmup", str(args.warmup)] + (["--cpu-time"] if args.cpu_time
                                                           else []),
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", help="git revision to compare against (e.g. the commit "
                    "before the determinism change)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--openblas-threads", type=int, default=0, metavar="N",
                    help="start every child with OPENBLAS_NUM_THREADS=N (default: unset)")
    ap.add_argument("--cpu-time", action="store_true", help="time steps by the process's "
                    "CPU time (robust on a shared machine; meaningful for one thread)")
    ap.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.steps, args.warmup, args.cpu_time)
        return
    if not args.baseline:
        ap.error("--baseline REV is required (the revision to compare this tree against)")
    cases, counts = args.cases.split(","), [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": unpack(args.baseline, Path(tmp)), "after": ROOT}
        best: dict = {}
        digests: dict = {}
        for _ in range(args.rounds):
            for case in cases:
                for t in counts:
                    for name, tree in trees.items():
                        r = run(tree, case, t, args)
                        key = (case, t, name)
                        best[key] = min(best.get(key, float("inf")), r["ms"])
                        digests.setdefault((case, name), set()).add(r["digest"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    blas = f"OPENBLAS_NUM_THREADS={args.openblas_threads}" if args.openblas_threads else \
        "OPENBLAS_NUM_THREADS unset"
    print(f"baseline {args.baseline}; best of {args.rounds} rounds, median of {args.steps} "
          f"steps ({'process CPU time' if args.cpu_time else 'wall time'}); {blas}; load "
          f"average {load:.1f} at the end\n")
    print("| case | threads | before ms/step | after ms/step | after/before | "
          "same bits for all thread counts: before | after |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        same = {name: "yes" if len(digests[(case, name)]) == 1 else "no" for name in trees}
        for t in counts:
            b, a = best[(case, t, "before")], best[(case, t, "after")]
            print(f"| {case} | {t} | {b:.1f} | {a:.1f} | {a / b:.2f} | {same['before']} | "
                  f"{same['after']} |")


if __name__ == "__main__":
    main()
