"""The whole GPU check in one command: gpu tests, CUDA-against-CPU parity, and the GPU tables.

Made for one call on a lent GPU machine (an H100/H200 whose Python already has CuPy, NumPy,
torch with CUDA, pytest and hypothesis, and no network). It runs minidl from this working tree,
installs nothing, and writes ``report.md`` and ``report.json`` into OUT_DIR:

1. ``tests``: the ``gpu``-marked test suite (every failure listed, the run never stops at the
   first one);
2. ``parity``: every op of the table below on CUDA against the CPU on the same data, forward
   and every input's gradient, float32 and float64; then LeNet-5 and ResNet-20 training steps
   on both devices from the same weights, compared step by step;
3. ``tables``: conv / pool / BN kernels against torch's cuDNN on the shapes of
   ``benchmarks/bench_conv.py``, and whole training steps (LeNet-5 b256, cifar_resnet20 b128,
   resnet18-cifar b128) against torch CUDA, with device memory peaks.

``--dry-run`` runs the same plumbing on the CPU with tiny sizes (the "GPU" side is then the
CPU too), so the script is known to work before a GPU ever sees it; ``tests/test_gpu_check.py``
runs it. Each section has a time budget, so the whole check fits one device call:

    python scripts/gpu_check.py gpu-report              # on the GPU machine (about 5 minutes)
    python scripts/gpu_check.py /tmp/report --dry-run   # anywhere, in a few seconds
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

import minidl as md  # noqa: E402
import minidl.functional as F  # noqa: E402
from minidl import backend  # noqa: E402

# ---- 1. the gpu-marked tests --------------------------------------------------------------


def run_tests(out: Path, dry_run: bool, budget_s: float) -> dict:
    """Run ``pytest -m gpu`` in a child process and summarise its junit report."""
    xml = out / "gpu-tests.xml"
    # the dry run only proves the plumbing, on one small test file
    targets = ["tests/test_elementwise.py"] if dry_run else []
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *targets]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                             timeout=budget_s, check=False)
        tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
        code: int | str = res.returncode
    except subprocess.TimeoutExpired:
        tail, code = [f"stopped after its budget of {budget_s:.0f} s"], "timeout"
    summary: dict[str, Any] = {"command": " ".join(cmd[1:]), "exit": code, "tail": tail,
                               "seconds": round(time.perf_counter() - t0, 1)}
    if xml.exists():
        summary.update(_junit_summary(xml))
    return summary


def _junit_summary(xml: Path) -> dict:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        counts["tests"] += 1
        for kind, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            node = case.find(kind)
            if node is None:
                continue
            counts[key] += 1
            if kind != "skipped":
                first = (node.get("message") or kind).splitlines()[:1] or [kind]
                failed.append(f"{case.get('classname')}::{case.get('name')}: {first[0]}"[:300])
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed}


# ---- 2. parity: CUDA against the CPU --------------------------------------------------------

def _pos(shape: tuple) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def _normal(shape: tuple) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.standard_normal(shape)


def _labels(n: int, c: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.integers(0, c, n)


def _probs(shape: tuple) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(0.05, 0.95, shape)


X = (4, 3, 8, 8)
# name: (function of tensors, input makers, which inputs are differentiable)
OPS: dict[str, tuple[Callable, list, list[bool]]] = {
    "add": (lambda a, b: a + b, [_normal((5, 6)), _normal((6,))], [True, True]),
    "mul": (lambda a, b: a * b, [_normal((5, 6)), _normal((5, 1))], [True, True]),
    "div": (lambda a, b: a / b, [_normal((5, 6)), _pos((5, 6))], [True, True]),
    "pow": (lambda a: a ** 3, [_normal((5, 6))], [True]),
    "exp": (F.exp, [_normal((5, 6))], [True]),
    "log": (F.log, [_pos((5, 6))], [True]),
    "sqrt": (F.sqrt, [_pos((5, 6))], [True]),
    "tanh": (F.tanh, [_normal((5, 6))], [True]),
    "sigmoid": (F.sigmoid, [_normal((5, 6))], [True]),
    "relu": (F.relu, [_normal((5, 6))], [True]),
    "leaky_relu": (F.leaky_relu, [_normal((5, 6))], [True]),
    "elu": (F.elu, [_normal((5, 6))], [True]),
    "softmax": (lambda a: F.softmax(a, -1), [_normal((5, 6))], [True]),
    "log_softmax": (lambda a: F.log_softmax(a, -1), [_normal((5, 6))], [True]),
    "sum": (lambda a: F.sum(a, 1), [_normal((5, 6))], [True]),
    "mean": (lambda a: F.mean(a, 0), [_normal((5, 6))], [True]),
    "var": (lambda a: F.var(a, 1), [_normal((5, 6))], [True]),
    "max": (lambda a: a.max(), [_normal((5, 6))], [True]),
    "matmul": (F.matmul, [_normal((5, 6)), _normal((6, 7))], [True, True]),
    "linear": (F.linear, [_normal((5, 6)), _normal((4, 6)), _normal((4,))], [True] * 3),
    "getitem": (lambda a: a[1:, ::2], [_normal((5, 6))], [True]),
    "cat": (lambda a, b: F.cat([a, b], 1), [_normal((5, 2)), _normal((5, 3))], [True, True]),
    "pad": (lambda a: F.pad(a, (1, 2, 0, 1)), [_normal(X)], [True]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
               [_normal(X), _normal((5, 3, 3, 3)), _normal((5,))], [True] * 3),
    "conv2d stride 2 dilation 2": (lambda x, w: F.conv2d(x, w, stride=2, padding=2, dilation=2),
                                   [_normal(X), _normal((4, 3, 3, 3))], [True, True]),
    "conv2d groups 3": (lambda x, w: F.conv2d(x, w, groups=3),
                        [_normal(X), _normal((6, 1, 3, 3))], [True, True]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1),
                         [_normal(X), _normal((3, 4, 3, 3)), _normal((4,))], [True] * 3),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [_normal(X)], [True]),
    "max_pool2d 3/2/1": (lambda x: F.max_pool2d(x, 3, 2, 1), [_normal(X)], [True]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), [_normal(X)], [True]),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 3), [_normal(X)], [True]),
    "batch_norm (train)": (
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
        [_normal(X), _pos((3,)), _normal((3,))], [True] * 3),
    "local_response_norm": (lambda x: F.local_response_norm(x, 3), [_pos(X)], [True]),
    "cross_entropy": (F.cross_entropy, [_normal((6, 5)), _labels(6, 5)], [True, False]),
    "nll_loss": (lambda a, t: F.nll_loss(F.log_softmax(a, -1), t),
                 [_normal((6, 5)), _labels(6, 5)], [True, False]),
    "mse_loss": (F.mse_loss, [_normal((6, 5)), _normal((6, 5))], [True, True]),
    "binary_cross_entropy": (F.binary_cross_entropy, [_probs((6, 5)), _probs((6, 5))],
                             [True, False]),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits,
                                         [_normal((6, 5)), _probs((6, 5))], [True, False]),
}
def _setitem(a, v):
    y = a * 1.0
    y[1:4, ::2] = v
    return y


def _weighted_ce(a, t):
    w = md.tensor(np.linspace(0.5, 1.5, a.shape[1]), dtype=a.dtype, device=a.device)
    return F.cross_entropy(a, t, weight=w, ignore_index=2, label_smoothing=0.1)


OPS.update({
    "max_pool2d dilation 2": (lambda x: F.max_pool2d(x, 3, 1, 1, dilation=2), [_normal(X)],
                              [True]),
    "pad reflect": (lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), [_normal(X)], [True]),
    "pad replicate": (lambda x: F.pad(x, (2, 0, 1, 3), mode="replicate"), [_normal(X)], [True]),
    "pad circular": (lambda x: F.pad(x, (1, 1, 2, 2), mode="circular"), [_normal(X)], [True]),
    "cross_entropy weight ignore_index": (_weighted_ce, [_normal((6, 5)), _labels(6, 5)],
                                          [True, False]),
    "setitem": (_setitem, [_normal((5, 6)), _normal((3, 3))], [True, True]),
    "x += y in the graph": (lambda a, b: _iadd(a * 1.0, b), [_normal((5, 6)), _normal((6,))],
                            [True, True]),
})


def _iadd(a, b):
    a += b
    return a


TOL = {"float64": 1e-9, "float32": 2e-4}


def _run_op(fn: Callable, arrays: list[np.ndarray], grads: list[bool], device: str,
            dtype: str, gy_seed: int) -> list[np.ndarray]:
    """Forward on ``device`` in ``dtype``, backward with a fixed random upstream gradient."""
    ins = [md.tensor(a.astype(dtype) if a.dtype.kind == "f" else a, device=device,
                     requires_grad=g) for a, g in zip(arrays, grads)]
    y = fn(*ins)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(dtype)
    y.backward(md.tensor(gy, device=device))
    return [y.numpy()] + [t.grad.numpy() for t, g in zip(ins, grads) if g]


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(b))), 1.0) if b.size else 1.0
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def op_parity(device: str) -> list[dict]:
    """Each op of OPS on ``device`` against the CPU: worst relative error over outputs."""
    rows = []
    for name, (fn, makers, grads) in OPS.items():
        for dtype in ("float32", "float64"):
            arrays = [make(np.random.default_rng(i)) for i, make in enumerate(makers)]
            try:
                ref = _run_op(fn, arrays, grads, "cpu", dtype, 99)
                got = _run_op(fn, arrays, grads, device, dtype, 99)
                err = max(_rel_err(g, r) for g, r in zip(got, ref))
                rows.append({"op": name, "dtype": dtype, "rel_err": err,
                             "ok": err <= TOL[dtype]})
            except Exception as e:  # noqa: BLE001 - every failure is a row of the report
                rows.append({"op": name, "dtype": dtype, "rel_err": None, "ok": False,
                             "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]})
    return rows


def training_parity(device: str, steps: int, batch: int) -> list[dict]:
    """LeNet-5 and ResNet-20 trained on the CPU and on ``device`` from the same weights."""
    from minidl import models, optim

    rows = []
    for name, make, shape in (("lenet5", models.lenet5, (1, 32, 32)),
                              ("cifar_resnet20", lambda: models.cifar_resnet(20), (3, 32, 32))):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        md.manual_seed(0)
        nets = {"cpu": make()}
        nets[device] = make()
        nets[device].load_state_dict(nets["cpu"].state_dict())
        nets[device].to(device)
        opts = {d: optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for d, m in nets.items()}
        for step in range(1, steps + 1):
            losses = {}
            for d, m in nets.items():
                opts[d].zero_grad()
                loss = F.cross_entropy(m(md.tensor(x, device=d)), md.tensor(y, device=d))
                loss.backward()
                opts[d].step()
                losses[d] = loss.item()
            ref = nets["cpu"].state_dict()
            err = max(_rel_err(v.numpy(), ref[k].numpy())
                      for k, v in nets[device].state_dict().items())
            rows.append({"model": name, "step": step, "loss_cpu": losses["cpu"],
                         "loss_device": losses[device], "weights_rel_err": err,
                         "ok": err <= 1e-3 and abs(losses["cpu"] - losses[device]) <= 1e-3})
    return rows


# ---- 3. the GPU tables --------------------------------------------------------------------

def kernel_table(device: str, dry_run: bool) -> list[dict]:
    """conv / pool / BN against torch on bench_conv's shapes (torch columns n/a without it)."""
    import bench_conv

    torch = None if dry_run else bench_conv._torch(device)
    rows = []
    for shape in bench_conv.QUICK if dry_run else bench_conv.SHAPES:
        rows += bench_conv.bench_shape(shape, 2 if dry_run else 10, device, torch)
    return rows


STEP_CASES = ["lenet5-b256", "cifar_resnet20-b128", "resnet18-cifar-b128"]


def step_table(device: str, dry_run: bool) -> list[dict]:
    """Whole training steps, minidl and torch each in its own child process."""
    import bench_models

    args = argparse.Namespace(device=device, repeats=2 if dry_run else 20,
                              warmup=1 if dry_run else 5, threads=os.cpu_count() or 1,
                              cpu_time=False)
    rows = []
    for case in ["lenet5-b64"] if dry_run else STEP_CASES:
        got = {fw: bench_models.run_child(fw, case, args) for fw in ("minidl", "torch")}
        md_ms, t_ms = got["minidl"].get("step_ms"), got["torch"].get("step_ms")
        rows.append({"case": case, "minidl_ms": md_ms, "torch_ms": t_ms,
                     "ratio": md_ms / t_ms if md_ms and t_ms else None,
                     "minidl_peak_mb": got["minidl"].get("gpu_peak_mb"),
                     "torch_peak_mb": got["torch"].get("gpu_peak_mb"),
                     "errors": [r["error"] for r in got.values() if "error" in r]})
    return rows


# ---- the report ---------------------------------------------------------------------------

def _fmt(v: Any, spec: str = ".3g") -> str:
    return "n/a" if v is None or v != v else format(v, spec)


def write_report(out: Path, result: dict) -> None:
    (out / "report.json").write_text(json.dumps(result, indent=1, default=str))
    lines = [f"# minidl GPU check ({'dry run on the CPU' if result['dry_run'] else 'CUDA'})",
             "", f"date: {result['date']}; machine: {result['machine']}", ""]
    for section, seconds in result["seconds"].items():
        lines.append(f"- {section}: {seconds:.0f} s")
    t = result.get("tests")
    if t:
        lines += ["", "## gpu-marked tests", "", f"`{t['command']}` exit {t['exit']}: "
                  f"{t.get('passed', '?')} passed, {t.get('failures', '?')} failed, "
                  f"{t.get('errors', '?')} errors, {t.get('skipped', '?')} skipped", ""]
        lines += [f"- {f}" for f in t.get("failed", [])] or ["no failures"]
    if "parity" in result:
        bad = [r for r in result["parity"]["ops"] if not r["ok"]]
        lines += ["", "## CUDA against CPU", "",
                  f"{len(result['parity']['ops']) - len(bad)} of {len(result['parity']['ops'])} "
                  "op/dtype cases within tolerance (float32 2e-4, float64 1e-9, relative to the "
                  "largest value), forward and every gradient.", ""]
        lines += [f"- {r['op']} {r['dtype']}: "
                  f"{r.get('error') or 'relative error ' + _fmt(r['rel_err'])}" for r in bad]
        lines += ["", "| model | step | loss CPU | loss device | weights rel. error | ok |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['step']} | {r['loss_cpu']:.6f} | {r['loss_device']:.6f} "
                  f"| {_fmt(r['weights_rel_err'])} | {'yes' if r['ok'] else 'NO'} |"
                  for r in result["parity"]["training"]]
    if "tables" in result:
        lines += ["", "## Kernels against torch (forward + backward, float32)", "",
                  "| op | shape | minidl ms | torch ms | minidl/torch |", "|---|---|---|---|---|"]
        for r in result["tables"]["kernels"]:
            ratio = r["ms"] / r["torch_ms"] if r["torch_ms"] == r["torch_ms"] else None
            lines.append(f"| {r['op']} | {r['shape']} | {r['ms']:.3f} | {_fmt(r['torch_ms'])} "
                         f"| {_fmt(ratio, '.2f')} |")
        lines += ["", "## Whole training steps against torch", "",
                  "| case | minidl ms | torch ms | minidl/torch | minidl peak MB | torch peak MB |",
                  "|---|---|---|---|---|---|"]
        for r in result["tables"]["steps"]:
            lines.append(f"| {r['case']} | {_fmt(r['minidl_ms'])} | {_fmt(r['torch_ms'])} | "
                         f"{_fmt(r['ratio'], '.2f')} | {_fmt(r['minidl_peak_mb'], '.0f')} | "
                         f"{_fmt(r['torch_peak_mb'], '.0f')} |")
            lines += [f"  - {e}" for e in r["errors"]]
    for name, err in result.get("crashed", {}).items():
        lines += ["", f"## {name} crashed", "", "```", err, "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _machine(device: str) -> str:
    parts = [platform.node() or "?", f"python {platform.python_version()}",
             f"numpy {np.__version__}"]
    if device == "cuda":
        cp = backend.xp_for("cuda")
        parts += [cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                  f"cupy {cp.__version__}"]
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, help="folder for report.md and report.json")
    ap.add_argument("--dry-run", action="store_true", help="the same plumbing on the CPU")
    ap.add_argument("--sections", default="tests,parity,tables",
                    help="comma-separated subset of tests, parity, tables")
    ap.add_argument("--tests-budget-s", type=float, default=200.0)
    args = ap.parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    # child processes (pytest, the benchmarks) import minidl from this tree, not an install
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")]))
    if device == "cuda" and not backend.cupy_available():
        print("gpu_check: CuPy or a CUDA GPU is not available here; run with --dry-run on a "
              "machine without a GPU", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    result: dict[str, Any] = {"dry_run": args.dry_run, "date": time.strftime("%Y-%m-%d %H:%M"),
                              "machine": _machine(device), "seconds": {}, "crashed": {}}
    steps, batch = (2, 4) if args.dry_run else (5, 32)
    plan: list[tuple[str, Callable[[], Any]]] = [
        ("tests", lambda: run_tests(args.out_dir, args.dry_run, args.tests_budget_s)),
        ("parity", lambda: {"ops": op_parity(device),
                            "training": training_parity(device, steps, batch)}),
        ("tables", lambda: {"kernels": kernel_table(device, args.dry_run),
                            "steps": step_table(device, args.dry_run)}),
    ]
    for name, run in plan:
        if name not in sections:
            continue
        t0 = time.perf_counter()
        try:
            result[name] = run()
        except Exception:  # noqa: BLE001 - a crashed section must not lose the others
            result["crashed"][name] = traceback.format_exc()[-3000:]
        result["seconds"][name] = time.perf_counter() - t0
        write_report(args.out_dir, result)  # a report survives a later section's time-out
        print(f"gpu_check: {name} done in {result['seconds'][name]:.0f} s", flush=True)
    print(f"gpu_check: report in {args.out_dir / 'report.md'}")
    return 1 if result["crashed"] or _failures(result) else 0


def _failures(result: dict) -> int:
    """Failed gpu tests, op cases and training steps: any of them makes the exit code 1."""
    tests = result.get("tests") or {}
    bad = int(tests.get("failures", 0)) + int(tests.get("errors", 0))
    bad += tests.get("exit") not in (None, 0, 5)   # 5: no test collected (the dry run's cpu)
    parity = result.get("parity") or {}
    return bad + sum(not r["ok"] for r in parity.get("ops", []) + parity.get("training", []))


if __name__ == "__main__":
    sys.exit(main())
