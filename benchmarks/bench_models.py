"""Whole training steps of lecture networks, minidl against PyTorch in the same run.

One step = forward, cross-entropy, backward, SGD-momentum update, float32. The figure is the
median of repeated steps after warm-up. Every (case, framework) runs in its own subprocess,
so each process holds one framework only and its peak memory is its own:

* CPU: peak resident set size (``VmHWM`` of /proc/self/status, which, unlike
  ``ru_maxrss``, is not inherited from the parent across ``exec``), and the part of it above
  the RSS right after importing the framework (what training itself costs);
* GPU: the peak of bytes in use in CuPy's memory pool (tracked with a memory hook over two
  extra steps, after the timing) against ``torch.cuda.max_memory_allocated``.

The two frameworks are run alternately for ``--rounds`` rounds and the best round of each is
kept, so that load from other processes hits both alike; the load average is printed with
each row. On the CPU both use ``--threads`` threads (minidl's conv worker threads and
OpenBLAS; torch's intra-op pool); on the GPU torch runs cuDNN with TF32 off. On a shared machine,
``--threads 1 --cpu-time`` times each step by the process's CPU time, which other jobs barely
change (wall time with two threads can swing 2-3x). Without torch, minidl's own figures are
printed with the GEMM-rate context.

    python benchmarks/bench_models.py --device cpu
    python benchmarks/bench_models.py --device cpu --cases lenet5-b64,cifar_resnet20-b64
    python benchmarks/bench_models.py --device cpu --threads 1 --cpu-time
    python benchmarks/bench_models.py --device cuda --cases resnet18-cifar-b128

``--cases lecture`` is the set the CPU parity target names (LeNet-5 b64 and b256, CIFAR
ResNet-20 b64 and b128, the MLP 784-512-512-10 b128), measured in both modes:

    python benchmarks/bench_models.py --cases lecture --threads 1 --cpu-time --rounds 3
    python benchmarks/bench_models.py --cases lecture --threads 2 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CASES = {
    # name: (model key, batch, channels, size)
    "lenet5-b64": ("lenet5", 64, 1, 32),
    "lenet5-b256": ("lenet5", 256, 1, 32),
    "cifar_resnet20-b64": ("cifar_resnet20", 64, 3, 32),
    "cifar_resnet20-b128": ("cifar_resnet20", 128, 3, 32),
    "resnet18-cifar-b128": ("resnet18_cifar", 128, 3, 32),
    "vgg11-cifar-b64": ("vgg11", 64, 3, 32),
    # the MLP reads flat vectors: channels 784, no image size
    "mlp-b128": ("mlp", 128, 784, 0),
}


LECTURE = ("lenet5-b64", "lenet5-b256", "cifar_resnet20-b64", "cifar_resnet20-b128", "mlp-b128")


def input_shape(batch: int, c: int, size: int) -> tuple[int, ...]:
    """(N, C, H, W) for the image cases, (N, features) for the MLP (size 0)."""
    return (batch, c, size, size) if size else (batch, c)


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux) in MB, or None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak RSS of this process. ``ru_maxrss`` is the fallback off Linux; it keeps the
    parent's peak across exec, which is why the parent here imports as little as it can."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    now = _status_mb("VmRSS")
    return now if now is not None else peak_rss_mb()


# ---- minidl side -------------------------------------------------------------------------

def minidl_model(key: str) -> Any:
    from minidl import models, nn
    if key == "lenet5":
        return models.lenet5()
    if key == "cifar_resnet20":
        return models.cifar_resnet(20)
    if key == "resnet18_cifar":
        m = models.resnet18(num_classes=10)
        m.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
        return m
    if key == "vgg11":
        return models.vgg11(num_classes=10)
    if key == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    raise KeyError(key)


def minidl_step(key: str, batch: int, c: int, size: int, device: str) -> tuple[Callable, Callable]:
    import minidl as md
    import minidl.functional as F
    from minidl import backend, optim
    md.manual_seed(0)
    model = minidl_model(key).to(device)
    model.train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    data = rng.standard_normal(input_shape(batch, c, size)).astype(np.float32)
    x = md.tensor(data, device=device)
    y = md.tensor(rng.integers(0, 10, batch), device=device)

    def step() -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step, lambda: backend.synchronize(device)


# ---- torch side --------------------------------------------------------------------------

def torch_model(key: str) -> Any:
    import torch
    from torch import nn

    if key == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84),
            nn.Tanh(), nn.Linear(84, 10))
    if key == "cifar_resnet20":
        class Block(nn.Module):
            def __init__(self, cin: int, cout: int, stride: int) -> None:
                super().__init__()
                self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(cout)
                self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(cout)
                self.pad = cout - cin
                self.stride = stride

            def forward(self, x: Any) -> Any:
                out = torch.relu(self.b1(self.c1(x)))
                out = self.b2(self.c2(out))
                short = x
                if self.stride != 1 or self.pad:  # option A: subsample, zero-pad channels
                    short = nn.functional.pad(x[:, :, ::self.stride, ::self.stride],
                                              (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
                return torch.relu(out + short)

        layers: list = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        cin = 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(3):
                layers.append(Block(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
        return nn.Sequential(*layers)
    if key == "resnet18_cifar":
        return _torch_resnet18_cifar(nn)
    if key == "vgg11":
        return _torch_vgg11(nn)
    if key == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    raise KeyError(key)


def _torch_resnet18_cifar(nn: Any) -> Any:
    """torchvision's resnet18 with a 3x3 stem and no max pool, written out (torchvision's
    wheels need a CUDA build of torch)."""
    import torch

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.down is None else self.down(x)))

    layers: list = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for i, w in enumerate((64, 128, 256, 512)):
        for j in range(2):
            layers.append(Basic(cin, w, 2 if i > 0 and j == 0 else 1))
            cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


def _torch_vgg11(nn: Any) -> Any:
    """torchvision's vgg11 (configuration A), written out."""
    layers: list = []
    cin = 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(4096, 10))


def torch_step(key: str, batch: int, c: int, size: int, device: str) -> tuple[Callable, Callable]:
    import torch
    torch.manual_seed(0)
    dev = "cuda" if device == "cuda" else "cpu"
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    model = torch_model(key).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    data = rng.standard_normal(input_shape(batch, c, size)).astype(np.float32)
    x = torch.tensor(data, device=dev)
    y = torch.tensor(rng.integers(0, 10, batch), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    return step, sync


# ---- measurement (in the child process) ----------------------------------------------------

def _import_framework(framework: str, threads: int) -> None:
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
    else:
        import minidl.models  # noqa: F401 - the zoo is imported lazily by minidl


def measure(framework: str, case: str, device: str, repeats: int, warmup: int,
            threads: int, cpu_time: bool = False) -> dict:
    """Time ``repeats`` steps after ``warmup`` ones; memory as described in the module doc.

    ``cpu_time`` times by ``time.process_time`` (meaningful with one thread: it sums them).
    """
    clock = time.process_time if cpu_time else time.perf_counter
    key, batch, c, size = CASES[case]
    _import_framework(framework, threads)
    base_rss = rss_mb()
    if device == "cuda" and framework == "torch":
        import torch
        torch.cuda.reset_peak_memory_stats()
    make = minidl_step if framework == "minidl" else torch_step
    step, sync = make(key, batch, c, size, device)
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = clock()
        step()
        sync()
        times.append(clock() - t0)
    out = {"framework": framework, "case": case, "step_ms": 1e3 * float(np.median(times)),
           "min_ms": 1e3 * float(min(times)), "peak_rss_mb": peak_rss_mb(),
           "import_rss_mb": base_rss}
    if device == "cuda":
        out["gpu_peak_mb"] = _gpu_peak_mb(framework, step, sync)
    return out


def _gpu_peak_mb(framework: str, step: Callable, sync: Callable) -> float:
    """Peak bytes in use on the GPU, model, optimizer state and data included."""
    if framework == "torch":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    import cupy
    from cupy.cuda import memory_hook

    pool = cupy.get_default_memory_pool()

    class PeakHook(memory_hook.MemoryHook):
        """Bytes handed out by the pool (not what it caches): torch's 'allocated'."""

        name = "PeakHook"

        def __init__(self) -> None:
            self.used = self.peak = pool.used_bytes()

        def malloc_postprocess(self, **kw: Any) -> None:
            self.used += kw["mem_size"]
            self.peak = max(self.peak, self.used)

        def free_postprocess(self, **kw: Any) -> None:
            self.used -= kw["mem_size"]

    # The hook costs Python time per allocation, so it watches two extra steps after the
    # timing; steady state is reached by then.
    hook = PeakHook()
    with hook:
        for _ in range(2):
            step()
        sync()
    return hook.peak / 2**20


def gemm_gflops(n: int = 1024) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        np.matmul(a, b, out=out)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


# ---- orchestration (parent process) ------------------------------------------------------

def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "MINIDL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_child(framework: str, case: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", framework, "--cases", case, "--device",
           args.device, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--threads", str(args.threads)] + (["--cpu-time"] if args.cpu_time else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=_child_env(args.threads))
    if res.returncode:
        lines = res.stderr.strip().splitlines() or [f"exit code {res.returncode}"]
        return {"framework": framework, "case": case, "error": lines[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _probe(what: str, threads: int) -> str | None:
    """Ask a throw-away interpreter (so this process stays small) for a version string."""
    code = {"torch": "import torch; print(torch.__version__)",
            "torch-cuda": "import torch; print(torch.__version__ if torch.cuda.is_available() "
                          "else '')",
            "minidl": "import minidl; print(minidl.__version__)",
            "gemm": f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                    "import bench_models as b; print(round(b.gemm_gflops(), 1))",
            "gpu": "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); "
                   "print(p['name'].decode(), cupy.__version__)"}[what]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, env=_child_env(threads))
    out = res.stdout.strip()
    return out if res.returncode == 0 and out else None


def _best(runs: list[dict]) -> dict | None:
    """The round with the lowest median step time (the one least disturbed by load)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1] if runs else None
    best = dict(min(ok, key=lambda r: r["step_ms"]))
    for k in ("peak_rss_mb", "gpu_peak_mb"):
        if k in best:
            best[k] = max(r[k] for r in ok)
    return best


def _fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of "
                    + ", ".join(CASES) + "; 'lecture' = " + ",".join(LECTURE))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternate minidl/torch this many times per case, keep the best")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="CPU threads for both frameworks (default: all cores)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time steps by process CPU time (needs --threads 1; robust to load)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--child", choices=["minidl", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases = [c for name in args.cases.split(",") if name
             for c in (LECTURE if name == "lecture" else (name,))]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {list(CASES)}")
    if args.cpu_time and (args.threads != 1 or args.device != "cpu"):
        ap.error("--cpu-time needs --device cpu --threads 1 (process time sums all threads)")
    if args.child:
        print(json.dumps(measure(args.child, cases[0], args.device, args.repeats, args.warmup,
                                 args.threads, args.cpu_time)))
        return
    torch_version = None if args.no_torch else _probe(
        "torch-cuda" if args.device == "cuda" else "torch", args.threads)
    print(f"# minidl {_probe('minidl', args.threads)}, numpy {np.__version__}, python "
          f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"device {args.device}, {time.strftime('%Y-%m-%d %H:%M')}")
    if args.device == "cpu":
        print(f"# float32 GEMM rate (numpy.matmul 1024^3, {args.threads} threads): "
              f"{_probe('gemm', args.threads)} GFLOP/s")
    else:
        print(f"# GPU: {_probe('gpu', args.threads)}")
    if torch_version:
        print(f"# torch {torch_version}, {args.threads} threads"
              + (", cuDNN, TF32 off" if args.device == "cuda" else ""))
    print(f"# median of {args.repeats} steps after {args.warmup} warm-up, best of "
          f"{args.rounds} alternating rounds, "
          + ("process CPU time" if args.cpu_time else "wall time"))
    if args.device == "cpu":
        head = ("| case | minidl ms/step | torch ms/step | ratio | minidl peak RSS MB | "
                "torch peak RSS MB | ratio | minidl above import MB | torch above import MB "
                "| ratio | load |")
    else:
        head = ("| case | minidl ms/step | torch ms/step | ratio | minidl GPU peak MB | "
                "torch GPU peak MB | ratio |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    sys.stdout.flush()
    for case in cases:
        runs: dict[str, list[dict]] = {"minidl": [], "torch": []}
        for _ in range(max(1, args.rounds)):
            runs["minidl"].append(run_child("minidl", case, args))
            if torch_version:
                runs["torch"].append(run_child("torch", case, args))
        m, t = _best(runs["minidl"]), _best(runs["torch"])
        load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "-"
        if t and "error" in t:
            print(f"# torch failed on {case}: {t['error']}")
            t = None
        if m is None or "error" in m:
            print(f"| {case} | error: {m['error'] if m else '?'} |" + " |" * (head.count("|") - 3))
            continue
        ms = f"{m['step_ms']:.1f}"
        if args.device == "cpu":
            m_up = m["peak_rss_mb"] - m["import_rss_mb"]
            if t:
                t_up = t["peak_rss_mb"] - t["import_rss_mb"]
                print(f"| {case} | {ms} | {t['step_ms']:.1f} | "
                      f"{_fmt_ratio(m['step_ms'], t['step_ms'])} | {m['peak_rss_mb']:.0f} | "
                      f"{t['peak_rss_mb']:.0f} | {_fmt_ratio(m['peak_rss_mb'], t['peak_rss_mb'])} "
                      f"| {m_up:.0f} | {t_up:.0f} | {_fmt_ratio(m_up, t_up)} | {load} |")
            else:
                print(f"| {case} | {ms} | - | - | {m['peak_rss_mb']:.0f} | - | - | {m_up:.0f} "
                      f"| - | - | {load} |")
        else:
            if t:
                mg, tg = m["gpu_peak_mb"], t["gpu_peak_mb"]
                print(f"| {case} | {ms} | {t['step_ms']:.1f} | "
                      f"{_fmt_ratio(m['step_ms'], t['step_ms'])} | {mg:.0f} | {tg:.0f} | "
                      f"{_fmt_ratio(mg, tg)} |")
            else:
                print(f"| {case} | {ms} | - | - | {m['gpu_peak_mb']:.0f} | - | - |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
