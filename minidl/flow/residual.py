"""Experiment 6: plain against residual nets at depths 20 and 56: flow at init, training."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import manual_seed
from ..models import cifar_resnet
from ..train import model_accuracy
from .measure import measure_flow, watch
from .nets import (
    make_resnet_mlp,
    mnist_inputs,
    sgd_train,
    zero_init_residual,
)
from .plots import layer_norm_plot, new_figure, save_figure, smooth, style_for
from .result import FlowResult

__all__ = ["residual"]


def _resnet_blocks(model: Any, arch: str) -> list:
    if arch == "mlp":
        return list(model.children())[1:-1]
    return [*model.layer1, *model.layer2, *model.layer3]


def residual(depths: Sequence[int] = (20, 56), arch: str = "mlp", width: int = 32,
             steps: int = 500, batch: int = 64, lr: float = 0.05, probe: int = 256,
             zero_init: bool = True, seed: int = 0, tensorboard: str | None = None) -> FlowResult:
    """Plain against residual nets at each depth: per-block gradient norms at initialisation,
    then training loss over the same number of SGD steps on the MNIST subset.

    ``arch='mlp'`` (default) uses :func:`make_resnet_mlp` (the CIFAR ResNet's blocks with
    Linear layers, fast on a CPU); ``arch='cifar'`` uses ``minidl.models.cifar_resnet(depth,
    plain=...)`` itself on the 28x28 digits (1 input channel, widths ``width/4, width/2,
    width``; depths 6n+2; about 0.5 s (depth 20) to 1.5 s (depth 56) per step on a CPU).
    With ``zero_init`` the residual nets are also trained with :func:`zero_init_residual`.
    Columns: the gradient norm at the first block's output over the last block's at init,
    the training loss averaged over the first and the last 10% of steps, and the accuracy
    on the 1,000 held-out digits. ``tensorboard``: a folder where every net's training
    steps are logged (per block) as one TensorBoard run.
    """
    if arch not in ("mlp", "cifar"):
        raise ValueError(f"residual: arch must be 'mlp' or 'cifar', got {arch!r}")
    flat = arch == "mlp"
    x, y = mnist_inputs("train", flat=flat)
    xt, yt = mnist_inputs("test", flat=flat)
    rows, curves = [], {}
    tail = max(1, steps // 10)
    kinds = ["plain", "resnet"] + (["resnet-zero"] if zero_init else [])
    for d in depths:
        for kind in kinds:
            manual_seed(seed)
            model = _net(kind, d, arch, width)
            blocks = _resnet_blocks(model, arch)
            rec = measure_flow(model, x[:probe], y[:probe], layers=blocks)
            block_norms = [r["out_grad_norm"] for r in rec.step_rows(0)]
            name = f"{kind}-{d}"
            with watch(model, tensorboard, name, layers=blocks):
                losses = sgd_train(model, x, y, steps, lr, batch, seed)
            curves[name] = {"blocks": block_norms, "losses": losses}
            rows.append({"net": name, "depth": d, "blocks": len(blocks),
                         "grad first/last block": block_norms[0] / block_norms[-1],
                         "loss start": float(np.mean(losses[:tail])),
                         "loss end": float(np.mean(losses[-tail:])),
                         "test acc": model_accuracy(model, xt, yt)})
    notes = _residual_notes(rows, depths, kinds)
    notes.append(f"{steps} SGD steps (lr {lr:g}, batch {batch}), arch={arch}; 'loss start' and "
                 f"'loss end' average the first and last {tail} steps; resnet-zero = "
                 "zero_init_residual (each block starts as the identity)")
    return FlowResult("residual", rows, list(rows[0]), notes,
                      {"curves": curves, "steps": steps, "arch": arch}, _plot_residual)


def _net(kind: str, depth: int, arch: str, width: int) -> Any:
    """The ``kind`` ('plain', 'resnet' or 'resnet-zero') net of ``arch`` at ``depth``."""
    plain = kind == "plain"
    if arch == "mlp":
        model = make_resnet_mlp(depth, width, plain)
    else:
        model = cifar_resnet(depth, plain=plain, in_channels=1,
                             widths=(width // 4, width // 2, width))
    return zero_init_residual(model) if kind == "resnet-zero" else model


def _residual_notes(rows: list[dict[str, Any]], depths: Sequence[int],
                    kinds: list[str]) -> list[str]:
    """For each kind of net: does the deepest train worse than the shallowest?"""
    notes = []
    by = {r["net"]: r for r in rows}
    if len(depths) >= 2:
        lo, hi = min(depths), max(depths)
        for kind in kinds:
            a, b = by.get(f"{kind}-{lo}"), by.get(f"{kind}-{hi}")
            if a and b:
                verdict = ("deeper trains worse" if b["loss end"] > a["loss end"]
                           else "deeper trains as well or better")
                notes.append(f"{kind:>11}: final loss {a['loss end']:.3f} at depth {lo} vs "
                             f"{b['loss end']:.3f} at depth {hi} ({verdict})")
    return notes


def _plot_residual(result: FlowResult, path: Path) -> Path:
    curves = result.data["curves"]
    depths = sorted({int(k.rsplit("-", 1)[1]) for k in curves})
    styles = {k: style_for(depths.index(int(k.rsplit("-", 1)[1])), dashed=k.startswith("plain"),
                           dotted=k.startswith("resnet-zero")) for k in curves}
    fig, (ax1, ax2) = new_figure(ncols=2)
    layer_norm_plot(ax1, {k: v["blocks"] for k, v in curves.items()},
                    "gradient at each block's output, at init", ylabel="gradient L2 norm",
                    xlabel="block (input side = 1)", styles=styles)
    for name, c in curves.items():
        sm = smooth(c["losses"])
        ax2.plot(np.arange(len(sm)) + (len(c["losses"]) - len(sm)), sm, label=name,
                 **styles[name])
    ax2.set_ylim(0, min(3.0, ax2.get_ylim()[1]))
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("training loss (moving average of 10)")
    ax2.set_title(f"training, arch={result.data['arch']}", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return save_figure(fig, path)
