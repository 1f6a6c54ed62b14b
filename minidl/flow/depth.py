"""Experiments 2 and 3: the MLP depth sweep, activation x init x BatchNorm, decay per layer."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import manual_seed
from .measure import flow_summary, measure_flow, watch
from .nets import ACTIVATIONS, INITS, make_mlp, mnist_inputs, sgd_train
from .plots import layer_norm_plot, new_figure, save_figure, style_for
from .result import FlowResult

__all__ = ["depth"]


def depth(depths: Sequence[int] = (2, 5, 10, 20, 50),
          activations: Sequence[str] = ACTIVATIONS, inits: Sequence[str] = INITS,
          batchnorm: Sequence[bool] = (False, True), width: int = 32, steps: int = 100,
          batch: int = 64, lr: float = 0.05, probe: int = 256, seed: int = 0,
          tensorboard: str | None = None) -> FlowResult:
    """MLP depth sweep on MNIST-subset inputs: how the weight-gradient norm changes from the
    last layer to the first, at initialisation and after ``steps`` SGD steps.

    For every (depth, activation, init, BatchNorm) the net is measured on a fixed batch of
    ``probe`` training images. Columns: ``|g first|`` the first layer's weight-gradient
    norm; ``ratio`` first/last layer; ``decay/layer`` the per-layer factor fitted to the
    log-norms of the hidden layers (exp of minus the slope; < 1 vanishes towards the input);
    ``act gain`` the geometric mean over layers of |grad at an activation's input| /
    |grad at its output| (sigmoid: at most 1/4, since sigmoid' <= 1/4); the same after
    training, and the training loss at the first and last step. ``tensorboard``: a folder
    where every configuration's training steps are logged as one TensorBoard run
    (:func:`~minidl.flow.measure.watch`).
    """
    x, y = mnist_inputs("train")
    xp_, yp_ = x[:probe], y[:probe]
    rows: list[dict[str, Any]] = []
    curves: dict[tuple, dict[str, Any]] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in depths:
            for act in activations:
                for init in inits:
                    for bn in batchnorm:
                        manual_seed(seed)
                        model = make_mlp(d, width, act, init, batchnorm=bn)
                        s0 = flow_summary(measure_flow(model, xp_, yp_))
                        run = f"depth{d}-{act}-{init}" + ("-bn" if bn else "")
                        with watch(model, tensorboard, run):
                            losses = sgd_train(model, x, y, steps, lr, batch, seed) if steps \
                                else []
                        s1 = flow_summary(measure_flow(model, xp_, yp_)) if steps else s0
                        curves[(d, act, init, bn)] = {"init": s0["norms"], "trained": s1["norms"],
                                                      "losses": losses}
                        rows.append({
                            "depth": d, "act": act, "init": init, "BN": bn,
                            "|g first| init": s0["norms"][0], "ratio init": s0["ratio"],
                            "decay/layer init": s0["decay"], "act gain init": s0["act_gain"],
                            f"ratio @{steps}": s1["ratio"], f"decay/layer @{steps}": s1["decay"],
                            "loss first": losses[0] if losses else float("nan"),
                            "loss last": float(np.mean(losses[-10:])) if losses else float("nan"),
                        })
    notes = _depth_notes(rows)
    return FlowResult("depth", rows, list(rows[0]), notes,
                      {"curves": curves, "depths": list(depths), "activations": list(activations),
                       "inits": list(inits), "batchnorm": list(batchnorm), "steps": steps},
                      _plot_depth)


def _depth_notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    sig = [r["act gain init"] for r in rows if r["act"] == "sigmoid" and not r["BN"]
           and np.isfinite(r["act gain init"])]
    if sig:
        notes.append(f"sigmoid backward gain per layer (|grad in| / |grad out| of each Sigmoid, "
                     f"geometric mean per net, no BN): {min(sig):.3f} .. {max(sig):.3f}, "
                     "never above the bound 1/4")
    deepest = max(r["depth"] for r in rows)
    for r in rows:
        if r["depth"] == deepest and r["init"] in ("glorot", "he"):
            notes.append(f"depth {deepest} {r['act']:>7}/{r['init']:<6}"
                         f"{' +BN' if r['BN'] else '    '}: decay per layer "
                         f"{r['decay/layer init']:.3g}, first/last ratio {r['ratio init']:.3g}")
    notes.append("'loss last' is the mean of the last 10 training losses; '-' marks a value "
                 "that is not finite (0/0: every gradient underflowed, or training diverged).")
    return notes


def _plot_depth(result: FlowResult, path: Path) -> Path:
    d = result.data
    depth_shown = max(x for x in d["depths"] if x <= 20) if any(x <= 20 for x in d["depths"]) \
        else d["depths"][0]
    acts = d["activations"]
    fig, axes = new_figure(ncols=len(acts), nrows=2, size=(4.2, 3.3))
    for row, phase in enumerate(("init", "trained")):
        for col, act in enumerate(acts):
            series, styles = {}, {}
            for i, init in enumerate(d["inits"]):
                for bn in d["batchnorm"]:
                    c = d["curves"].get((depth_shown, act, init, bn))
                    if c is not None:
                        label = f"{init}{' + BN' if bn else ''}"
                        series[label] = c[phase]
                        styles[label] = style_for(i, dashed=bn)
            when = "at init" if phase == "init" else f"after {d['steps']} steps"
            layer_norm_plot(axes[row * len(acts) + col], series,
                            f"{act}, depth {depth_shown}, {when}",
                            ylabel="weight-gradient norm", styles=styles)
    return save_figure(fig, path)
