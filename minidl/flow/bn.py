"""Experiment 4: a deep sigmoid MLP with and without BatchNorm."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backend import manual_seed
from ..train import model_accuracy
from .measure import flow_summary, measure_flow, watch
from .nets import make_mlp, mnist_inputs, sgd_train
from .plots import layer_norm_plot, new_figure, save_figure, smooth, style_for
from .result import FlowResult

__all__ = ["bn"]


def bn(depth: int = 20, width: int = 32, inits: Sequence[str] = ("naive", "glorot"),
       steps: int = 200, batch: int = 64, lr: float = 0.05, probe: int = 256,
       seed: int = 0, tensorboard: str | None = None) -> FlowResult:
    """A ``depth``-layer sigmoid MLP with and without BatchNorm (Linear -> BN -> sigmoid), for
    each init: weight-gradient norms per layer at init, saturation, training loss, accuracy.
    ``tensorboard``: a folder where every net's training steps are logged as one run.
    """
    x, y = mnist_inputs("train")
    xt, yt = mnist_inputs("test")
    rows, curves = [], {}
    tail = max(1, steps // 10)
    with np.errstate(divide="ignore", invalid="ignore"):
        for init in inits:
            for use_bn in (False, True):
                manual_seed(seed)
                model = make_mlp(depth, width, "sigmoid", init, batchnorm=use_bn)
                rec = measure_flow(model, x[:probe], y[:probe])
                s0 = flow_summary(rec)
                sig = [r for r in rec.step_rows(0) if r["type"] == "Sigmoid"]
                with watch(model, tensorboard, f"{init}" + ("-bn" if use_bn else "")):
                    losses = sgd_train(model, x, y, steps, lr, batch, seed)
                s1 = flow_summary(measure_flow(model, x[:probe], y[:probe]))
                name = f"sigmoid/{init}{' + BN' if use_bn else ''}"
                curves[name] = {"init": s0["norms"], "trained": s1["norms"], "losses": losses}
                rows.append({"net": name, "|g first| init": s0["norms"][0],
                             "ratio init": s0["ratio"], "decay/layer": s0["decay"],
                             "saturated": float(np.mean([r["saturated"] for r in sig])),
                             "act std": float(np.mean([r["act_std"] for r in sig])),
                             f"ratio @{steps}": s1["ratio"],
                             "loss start": float(np.mean(losses[:tail])),
                             "loss end": float(np.mean(losses[-tail:])),
                             "test acc": model_accuracy(model, xt, yt)})
    notes = [f"depth {depth}, width {width}, {steps} SGD steps (lr {lr:g}, batch {batch}); "
             "'saturated' and 'act std' average the sigmoid layers at init"]
    return FlowResult("bn", rows, list(rows[0]), notes,
                      {"curves": curves, "depth": depth, "steps": steps}, _plot_bn)


def _plot_bn(result: FlowResult, path: Path) -> Path:
    curves = result.data["curves"]
    inits = list(dict.fromkeys(k.split("/")[1].split(" ")[0] for k in curves))
    styles = {k: style_for(inits.index(k.split("/")[1].split(" ")[0]), dashed="BN" not in k)
              for k in curves}
    fig, (ax1, ax2) = new_figure(ncols=2)
    layer_norm_plot(ax1, {k: v["init"] for k, v in curves.items()},
                    f"sigmoid MLP, depth {result.data['depth']}, at init",
                    ylabel="weight-gradient norm", styles=styles)
    for name, c in curves.items():
        sm = smooth(c["losses"])
        ax2.plot(np.arange(len(sm)) + (len(c["losses"]) - len(sm)), sm, label=name,
                 **styles[name])
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("training loss (moving average of 10)")
    ax2.set_title("training", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return save_figure(fig, path)
