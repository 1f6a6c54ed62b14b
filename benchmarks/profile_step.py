"""Where a training step's time goes: seconds per Function class, forward and backward.

One step = forward, cross-entropy, backward, SGD-momentum update, float32 (as
benchmarks/bench_models.py). The script wraps ``Function.__call__`` and the engine's
per-node backward call with timers (here, not in the library), runs warm-up steps, then
times ``--steps`` steps and prints one table per case, sorted by total time:

* forward: the time inside ``Function.__call__`` outside any backward (recording included);
* backward: the time of each node's ``backward`` including the minidl ops it runs (those
  ops are not counted again as forward);
* "(engine)" is the backward pass minus its nodes (heap, delivery, accumulation, leaf
  ``.grad``), "(other)" the rest of the step (modules' Python, optimizer, zero_grad);
* a second table breaks the backward rows down into the Functions they run (a Conv2d's
  backward is a Conv2dGradInput and a Conv2dGradWeight), as "inside <node>.backward".

With ``--cpu-time`` the clock is the process CPU time (use it with ``--threads 1`` on a
shared machine: other jobs barely change it).

    python benchmarks/profile_step.py --threads 1 --cpu-time
    python benchmarks/profile_step.py --cases lenet5-b64 --steps 20
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thread_env import apply_threads  # noqa: E402 - before bench_models imports NumPy

if __name__ == "__main__":
    apply_threads()

from bench_models import CASES, input_shape, minidl_model  # noqa: E402 - the same steps


class Timers:
    """Per-(class, phase) seconds, filled by the wrappers :func:`install` puts in place."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.depth = 0        # > 0 while inside a node's backward
        self.node = ""        # the node whose backward is running
        self.backward_total = 0.0

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.backward_total = 0.0


def install(timers: Timers) -> Callable[[], None]:
    """Wrap Function.__call__, the engine's per-node backward and the backward pass; returns
    a function that puts the originals back."""
    from minidl import autograd

    orig_call = autograd.Function.__call__
    orig_node = autograd._call_backward
    orig_run = autograd._run_backward
    clock = timers.clock

    def call(self: Any, *inputs: Any) -> Any:
        # an op inside a backward is counted in that backward, and broken down apart
        phase = f"inside {timers.node}.backward" if timers.depth else "forward"
        t = clock()
        out = orig_call(self, *inputs)
        key = (type(self).__name__, phase)
        timers.seconds[key] += clock() - t
        timers.calls[key] += 1
        return out

    def node(fn: Any, *args: Any) -> Any:   # the engine's arguments, passed on as they are
        timers.depth += 1
        outer, timers.node = timers.node, type(fn).__name__
        t = clock()
        try:
            return orig_node(fn, *args)
        finally:
            key = (type(fn).__name__, "backward")
            timers.seconds[key] += clock() - t
            timers.calls[key] += 1
            timers.depth -= 1
            timers.node = outer

    def run(*args: Any, **kw: Any) -> Any:
        t = clock()
        try:
            return orig_run(*args, **kw)
        finally:
            timers.backward_total += clock() - t

    autograd.Function.__call__ = call
    autograd._call_backward = node
    autograd._run_backward = run

    def uninstall() -> None:
        autograd.Function.__call__ = orig_call
        autograd._call_backward = orig_node
        autograd._run_backward = orig_run

    return uninstall


def make_step(key: str, batch: int, c: int, size: int) -> Callable[[], None]:
    import numpy as np

    import minidl as md
    import minidl.functional as F
    from minidl import optim
    md.manual_seed(0)
    model = minidl_model(key)
    model.train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal(input_shape(batch, c, size)).astype(np.float32))
    y = md.tensor(rng.integers(0, 10, batch))

    def step() -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def profile(case: str, steps: int, warmup: int, clock: Callable[[], float]) -> str:
    """The table for one case, as text."""
    step = make_step(*CASES[case])
    timers = Timers(clock)
    uninstall = install(timers)
    try:
        for _ in range(warmup):
            step()
        timers.reset()
        t = clock()
        for _ in range(steps):
            step()
        total = clock() - t
    finally:
        uninstall()
    rows = [(s, name, phase, timers.calls[(name, phase)])
            for (name, phase), s in timers.seconds.items() if not phase.startswith("inside")]
    inner = sorted(((s, name, phase, timers.calls[(name, phase)])
                    for (name, phase), s in timers.seconds.items()
                    if phase.startswith("inside")), reverse=True)
    nodes_bwd = sum(s for s, _, phase, _ in rows if phase == "backward")
    engine = timers.backward_total - nodes_bwd
    other = total - sum(s for s, *_ in rows) - engine
    rows += [(engine, "(engine)", "backward", 0), (other, "(other)", "-", 0)]
    rows.sort(reverse=True)
    ms = 1e3 / steps
    lines = [f"## {case}: {total * ms:.2f} ms per step (profiled; the timers add a little)",
             "", "| Function | phase | ms/step | % | calls/step |", "|---|---|---|---|---|"]
    for s, name, phase, calls in rows:
        lines.append(f"| {name} | {phase} | {s * ms:.2f} | {100 * s / total:.1f} | "
                     f"{calls / steps:g} |")
    lines += ["", "Functions run inside the backward rows above (ops above 1 % of the step):",
              "", "| Function | phase | ms/step | % | calls/step |", "|---|---|---|---|---|"]
    for s, name, phase, calls in inner:
        if s >= 0.01 * total:
            lines.append(f"| {name} | {phase} | {s * ms:.2f} | {100 * s / total:.1f} | "
                         f"{calls / steps:g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="lenet5-b64,cifar_resnet20-b64",
                    help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="minidl worker threads and BLAS threads (default: minidl's)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by process CPU time (use with --threads 1)")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (process time sums all threads)")
    if args.threads is not None:    # (BLAS's variables were set at import, from argv)
        from minidl import parallel
        parallel.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"# {' '.join(sys.argv[1:]) or '(defaults)'}; clock: "
          f"{'process CPU time' if args.cpu_time else 'wall time'}\n")
    for c in cases:
        print(profile(c, args.steps, args.warmup, clock))
        print()


if __name__ == "__main__":
    main()
