"""Experiment 1: the single tanh neuron ``tanh(x + w)`` with its input shifted 0..6."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import functional as F
from ..nn import Normalization
from .nets import f64
from .plots import new_figure, save_figure
from .result import FlowResult

__all__ = ["neuron"]


def neuron(shifts: Sequence[float] | None = None, samples: int = 512, spread: float = 1.0,
           w: float = 0.0, seed: int = 0) -> FlowResult:
    """The single tanh neuron ``E = f(x, w) = tanh(x + w)`` as its input drifts away from 0.

    For each shift ``s`` (default 0, 0.5, ..., 6) three gradients dE/dw are measured with
    minidl's autograd in float64:

    - ``dE/dw (x=s)``: one input ``x = s``; the closed form is ``1 - tanh(s + w)**2``;
    - ``data``: ``E = mean_i tanh(x_i + w)`` over ``samples`` inputs ``x_i ~ N(s, spread**2)``;
    - ``data, normalized``: the same data through ``nn.Normalization`` adapted to it
      (mean and std fitted on the shifted data), which brings the gradient back.
    """

    shifts = list(np.linspace(0.0, 6.0, 13) if shifts is None else shifts)
    base = np.random.default_rng(seed).standard_normal((samples, 1)) * spread
    rows, single, raw, normed = [], [], [], []
    for s in shifts:
        wt = f64(w, requires_grad=True)
        F.tanh(f64([s]) + wt).sum().backward()
        g_single = float(wt.grad.item())
        closed = 1.0 - np.tanh(s + w) ** 2

        x = f64(base + s)
        wt = f64(w, requires_grad=True)
        F.tanh(x + wt).mean().backward()
        g_raw = float(wt.grad.item())

        norm = Normalization(dtype=np.float64).adapt(x)
        wt = f64(w, requires_grad=True)
        F.tanh(norm(x) + wt).mean().backward()
        g_norm = float(wt.grad.item())

        single.append(g_single)
        raw.append(g_raw)
        normed.append(g_norm)
        rows.append({"shift": float(s), "dE/dw (x=shift)": g_single, "1-tanh^2(x+w)": closed,
                     "|difference|": abs(g_single - closed), "dE/dw data": g_raw,
                     "dE/dw data normalized": g_norm})
    notes = []
    if 0.0 in shifts:
        at0 = single[shifts.index(0.0)]
        for s in (5.0, 6.0):
            if s in shifts:
                i = shifts.index(s)
                notes.append(f"shift {s:g}: dE/dw = {single[i]:.3e} = {single[i] / at0:.2e} x its "
                             f"value at shift 0; on the data {raw[i]:.3e} "
                             f"({raw[i] / raw[shifts.index(0.0)]:.2e} x), after Normalization "
                             f"{normed[i]:.3f} (restored)")
    worst = max(r["|difference|"] for r in rows)
    notes.append(f"largest |autograd - closed form| over all shifts: {worst:.1e}")
    return FlowResult("neuron", rows, list(rows[0]), notes,
                      {"shifts": shifts, "single": single, "data": raw, "normalized": normed},
                      _plot_neuron)


def _plot_neuron(result: FlowResult, path: Path) -> Path:
    d = result.data
    fig, (ax,) = new_figure()
    ax.plot(d["shifts"], d["single"], "o-", ms=3, label="one input x = shift (1 - tanh²)")
    ax.plot(d["shifts"], d["data"], "s-", ms=3, label="data x ~ N(shift, 1)")
    ax.plot(d["shifts"], d["normalized"], "^-", ms=3, label="same data + Normalization.adapt")
    ax.set_yscale("log")
    ax.set_xlabel("input shift")
    ax.set_ylabel("dE/dw")
    ax.set_title("single tanh neuron E = tanh(x + w), w = 0", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
