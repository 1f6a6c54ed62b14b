"""Lab ``normalization``: a shift of the input range between data sets (the "cloudy day").

A tanh MLP learns the bundled digits with inputs centred at 0. The new data set is the same
kind of digits with every pixel shifted by +5, as if the light changed. The pretrained net's
first tanh layer then saturates (its pre-activations are pushed far from 0), so its gradient
nearly vanishes and fine-tuning crawls; one ``nn.Normalization`` layer adapted to the new data
maps the inputs back to the range the net knows, and accuracy returns at once.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from ... import nn
from ...backend import manual_seed
from ...train import model_accuracy
from ..measure import measure_flow
from ..nets import make_mlp, mnist_inputs, sgd_train
from ..plots import new_figure, save_figure, smooth
from ..result import FlowResult

__all__ = ["normalization"]

SHIFT = 5.0


def normalization(quick: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
                  shift: float = SHIFT) -> FlowResult:
    """Pretrain on centred digits, then fine-tune on digits shifted by ``shift``.

    Rows: the pretrained net on the original test digits; on the shifted ones as it is, and
    behind a ``Normalization`` adapted (one mean and one std) to the shifted training
    digits; each fine-tuned for the same number of SGD steps. Columns: test accuracy before
    and after fine-tuning, the first layer's weight-gradient norm and the share of saturated
    first-layer tanh units (|tanh| > 0.99) at the start of fine-tuning.
    """
    x, y = mnist_inputs("train")
    xt, yt = mnist_inputs("test")
    if quick:
        x, y, xt, yt = x[:600], y[:600], xt[:300], yt[:300]
    pre_steps, tune_steps = (150, 60) if quick else (1500, 300)
    manual_seed(seed)
    net = make_mlp(3, 64, "tanh", "glorot")
    pretrain = sgd_train(net, x, y, pre_steps, lr=0.05, batch=64, seed=seed)
    xs, xts = x + shift, xt + shift
    rows: list[dict[str, Any]] = [_row("original inputs (pretrained)", net, xt, yt, x, y)]
    curves = {}
    for label, adapted in (("shifted, fine-tuned as is", False),
                           ("shifted, behind an adapted Normalization", True)):
        model = copy.deepcopy(net)
        if adapted:
            model = nn.Sequential(nn.Normalization(axis=None).adapt(xs), model)
        row = _row(label, model, xts, yt, xs, y)
        curves[label] = sgd_train(model, xs, y, tune_steps, lr=0.05, batch=64, seed=seed + 1)
        row["test acc after fine-tune"] = model_accuracy(model, xts, yt)
        rows.append(row)
    base, as_is, adapted = rows
    notes = [f"{pre_steps} SGD steps of pretraining (lr 0.05, batch 64) on centred digits, then "
             f"{tune_steps} steps of fine-tuning on digits shifted by {shift:g}; the adapted "
             "Normalization has one mean and one std, fitted on the shifted training digits.",
             f"Shifted, {as_is['saturated']:.0%} of the first layer's tanh outputs are "
             f"saturated, |tanh| > 0.99 (against {base['saturated']:.0%} on centred digits): "
             "they carry little information about the digit, so the net drops from "
             f"{base['test acc before fine-tune']:.1%} to "
             f"{as_is['test acc before fine-tune']:.1%}, and fine-tuning as is reaches "
             f"{as_is['test acc after fine-tune']:.1%}. Behind the adapted Normalization the "
             f"pretrained weights give {adapted['test acc before fine-tune']:.1%} before any "
             "training."]
    return FlowResult("normalization", rows, list(rows[0]), notes,
                      {"pretrain": pretrain, "curves": curves, "steps": tune_steps},
                      _plot_normalization)


def _row(label: str, model: Any, x_test: np.ndarray, y_test: np.ndarray, x_probe: np.ndarray,
         y_probe: np.ndarray) -> dict[str, Any]:
    """Accuracy on the test digits, first-layer gradient and saturation on a training batch."""
    rec = measure_flow(model, x_probe[:256], y_probe[:256])
    tanhs = [r for r in rec.step_rows(0) if r["type"] == "Tanh"]
    linears = [r for r in rec.step_rows(0) if r["type"] == "Linear"]
    return {"inputs": label, "test acc before fine-tune": model_accuracy(model, x_test, y_test),
            "first layer |g|": linears[0]["w_grad_norm"], "saturated": tanhs[0]["saturated"],
            "test acc after fine-tune": None}


def _plot_normalization(result: FlowResult, path: Path) -> Path:
    fig, (ax,) = new_figure(size=(6.0, 3.8))
    for i, (label, losses) in enumerate(result.data["curves"].items()):
        ax.plot(np.arange(len(smooth(losses))) + 1, smooth(losses), label=label, color=f"C{i}")
    ax.set_xlabel("fine-tuning step on the shifted digits")
    ax.set_ylabel("training loss (moving average of 10)")
    ax.set_yscale("log")
    ax.set_title("A shifted input range: fine-tuning as is vs. an adapted Normalization",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
