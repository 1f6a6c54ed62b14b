"""One measured backward pass and its summary: per-layer norms, first/last ratio, decay;
``watch`` for logging a training run's gradient flow to TensorBoard."""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import functional as F
from .nets import on_device
from .recorder import Recorder

__all__ = ["measure_flow", "flow_summary", "fit_decay", "watch"]


def fit_decay(norms: Sequence[float]) -> float:
    """Per-layer factor from the slope of log(norm) against layer index (input side first):
    ``exp(slope)`` for going one layer *towards the input*, so < 1 means vanishing."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a norm of 0 (underflow) is skipped
        ys = np.log(np.asarray(norms, dtype=np.float64))
    ok = np.isfinite(ys)
    if ok.sum() < 2:
        return float("nan")
    xs = np.arange(len(ys))[ok]
    slope = np.polyfit(xs, ys[ok], 1)[0]
    return float(np.exp(-slope))


def _geo_mean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if x is not None and x > 0], dtype=np.float64)
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def measure_flow(model: Any, x: np.ndarray, y: np.ndarray, layers: Any = None) -> Any:
    """One forward/backward pass on (x, y) under a Recorder; returns the Recorder."""
    model.zero_grad()
    with Recorder(model, layers) as rec:
        F.cross_entropy(model(on_device(x)), on_device(y)).backward()
    model.zero_grad()
    return rec


def watch(model: Any, log_dir: str | os.PathLike | None, run: str,
          layers: Any = None) -> contextlib.AbstractContextManager:
    """A :class:`Recorder` logging every training step of ``model`` to TensorBoard in
    ``log_dir/run`` (one run of the experiment's sweep); nothing at all when ``log_dir`` is
    None."""
    if log_dir is None:
        return contextlib.nullcontext()
    return Recorder(model, layers, tensorboard=os.path.join(log_dir, re.sub(r"[^\w.+-]", "_", run)))


def flow_summary(rec: Any) -> dict[str, Any]:
    """Weight-gradient norms per weight layer, first/last ratio, fitted decay, act factor."""
    rows = rec.step_rows(-1)
    weights = [r for r in rows
               if r["type"] in ("Linear", "Conv2d") and r["w_grad_norm"] is not None]
    norms = [r["w_grad_norm"] for r in weights]
    inner = norms[1:-1] if len(norms) >= 4 else norms
    # backward gain of each activation: |grad at its input| / |grad at its output|; its
    # input is the output of the row just before it (Linear or BatchNorm1d)
    gains = []
    for prev, row in zip(rows, rows[1:]):
        if row["type"] in ("Sigmoid", "Tanh", "ReLU") and prev["out_grad_norm"] and \
                row["out_grad_norm"]:
            gains.append(prev["out_grad_norm"] / row["out_grad_norm"])
    return {"norms": norms, "ratio": norms[0] / norms[-1] if norms and norms[-1] else float("nan"),
            "decay": fit_decay(inner), "act_gain": _geo_mean(gains)}
