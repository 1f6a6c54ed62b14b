"""Whole training steps of lecture networks, minidl against PyTorch in the same run.

One step = forward, cross-entropy, backward, SGD-momentum update, float32. The figure is the
median of repeated steps after warm-up. On the CPU each case runs in its own subprocess so
that its peak RSS can be read; on the GPU peak memory is CuPy's pool against torch's
allocator. Without torch, minidl's own figures are printed with the GEMM-rate context.

    python benchmarks/bench_models.py --device cpu
    python benchmarks/bench_models.py --device cuda --cases resnet18-cifar-b128
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
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    x = md.tensor(rng.standard_normal((batch, c, size, size)).astype(np.float32), device=device)
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
    x = torch.tensor(rng.standard_normal((batch, c, size, size)).astype(np.float32), device=dev)
    y = torch.tensor(rng.integers(0, 10, batch), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    return step, sync


# ---- measurement -------------------------------------------------------------------------

def measure(framework: str, case: str, device: str, repeats: int, warmup: int) -> dict:
    key, batch, c, size = CASES[case]
    base_rss = _rss_mb()
    make = minidl_step if framework == "minidl" else torch_step
    if framework == "torch":
        import torch
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    if device == "cuda":
        _reset_gpu_peak(framework)
    step, sync = make(key, batch, c, size, device)
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    out = {"framework": framework, "case": case, "step_ms": 1e3 * float(np.median(times)),
           "peak_rss_mb": _rss_mb(), "import_rss_mb": base_rss}
    if device == "cuda":
        out["gpu_peak_mb"] = _gpu_peak(framework)
    return out


def _reset_gpu_peak(framework: str) -> None:
    if framework == "torch":
        import torch
        torch.cuda.reset_peak_memory_stats()
    else:
        import cupy
        cupy.get_default_memory_pool().free_all_blocks()


def _gpu_peak(framework: str) -> float:
    if framework == "torch":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    import cupy
    # The pool keeps every block it ever handed out, so its total is the peak in use.
    return cupy.get_default_memory_pool().total_bytes() / 2**20


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


def torch_available(device: str) -> bool:
    try:
        import torch
        return torch.cuda.is_available() if device == "cuda" else True
    except Exception:
        return False


def run_child(framework: str, case: str, device: str, repeats: int, warmup: int) -> dict:
    cmd = [sys.executable, __file__, "--child", framework, "--cases", case, "--device", device,
           "--repeats", str(repeats), "--warmup", str(warmup)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        return {"framework": framework, "case": case, "error": res.stderr.strip().splitlines()[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of "
                    + ", ".join(CASES))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--child", choices=["minidl", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if args.child:
        print(json.dumps(measure(args.child, cases[0], args.device, args.repeats, args.warmup)))
        return
    with_torch = not args.no_torch and torch_available(args.device)
    import minidl
    print(f"# minidl {minidl.__version__}, numpy {np.__version__}, python "
          f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"device {args.device}, {time.strftime('%Y-%m-%d')}")
    if args.device == "cpu":
        print(f"# float32 GEMM rate (numpy.matmul 1024^3): {gemm_gflops():.1f} GFLOP/s")
    if with_torch:
        import torch
        print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}")
    mem = "peak RSS MB" if args.device == "cpu" else "GPU peak MB"
    print(f"| case | minidl ms/step | torch ms/step | ratio | minidl {mem} | torch {mem} | ratio |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        row = {}
        for fw in ["minidl"] + (["torch"] if with_torch else []):
            row[fw] = (run_child(fw, case, args.device, args.repeats, args.warmup)
                       if args.device == "cpu" else
                       measure(fw, case, args.device, args.repeats, args.warmup))
        m, t = row["minidl"], row.get("torch")
        if t and "error" in t:
            print(f"# torch failed on {case}: {t['error']}")
        if "error" in m:
            print(f"| {case} | error: {m['error']} | | | | | |")
            continue
        key = "peak_rss_mb" if args.device == "cpu" else "gpu_peak_mb"
        if t and "error" not in t:
            print(f"| {case} | {m['step_ms']:.1f} | {t['step_ms']:.1f} | "
                  f"{m['step_ms'] / t['step_ms']:.2f}x | {m[key]:.0f} | {t[key]:.0f} | "
                  f"{m[key] / t[key]:.2f}x |")
        else:
            print(f"| {case} | {m['step_ms']:.1f} | - | - | {m[key]:.0f} | - | - |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
