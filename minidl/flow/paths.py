"""Experiment 5: parallel paths (Inception) against a chain of the same units: dE/dw ~ 0?"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .nets import f64
from .plots import new_figure, save_figure
from .result import FlowResult

__all__ = ["parallel", "parallel_net", "sequential_net", "path_products"]


def parallel_net(x: Tensor, w: Tensor, v: Tensor, c: Tensor, u: Tensor) -> Tensor:
    """The parallel-unit network: ``h = w x``, ``p_k = tanh(v_k h + c_k)``, ``E = sum_k u_k p_k``.

    Shapes: x, w (T, 1); v, c, u (T, n) for T independent networks with n parallel units.
    Returns E of shape (T,). dE/dw is a sum over the n paths w -> h -> p_k -> E.
    """
    h = w * x
    return (u * F.tanh(v * h + c)).sum(axis=-1)


def sequential_net(x: Tensor, w: Tensor, v: Tensor, c: Tensor, u: Tensor) -> Tensor:
    """The same n units in a chain: ``a_0 = w x``, ``a_k = tanh(v_k a_{k-1} + c_k)``,
    ``E = u_1 a_n``. Shapes as :func:`parallel_net`; one path, a product of n factors."""
    a = w * x
    for k in range(v.shape[-1]):
        a = F.tanh(v[:, k:k + 1] * a + c[:, k:k + 1])
    return (u[:, :1] * a).sum(axis=-1)


def path_products(x: np.ndarray, w: np.ndarray, v: np.ndarray, c: np.ndarray,
                  u: np.ndarray) -> np.ndarray:
    """The chain-rule product along each path of :func:`parallel_net`, in closed form.

    Path k: dE/dp_k * dp_k/dh * dh/dw = u_k * v_k (1 - tanh²(v_k w x + c_k)) * x.
    Returns (T, n); the sum over the last axis is dE/dw.
    """
    z = v * (w * x) + c
    return u * (v * (1.0 - np.tanh(z) ** 2)) * x


def _dE_dw(net: Any, x: np.ndarray, w: np.ndarray, v: np.ndarray, c: np.ndarray,
           u: np.ndarray) -> np.ndarray:
    wt = f64(w, requires_grad=True)
    net(f64(x), wt, f64(v), f64(c), f64(u)).sum().backward()
    return wt.grad.numpy()[:, 0]


def parallel(max_paths: int = 8, trials: int = 4000, scale: float = 2.0, tol: float = 1e-3,
             seed: int = 0) -> FlowResult:
    """How often dE/dw ~ 0 (``|dE/dw| < tol``) over random initialisations, for n parallel
    units against a chain of the same n units, n = 1..max_paths.

    Weights and biases are drawn from N(0, scale²) (large enough that tanh units often
    saturate), output weights u from N(0, 1), input x = 1. With parallel paths the gradient
    is a *sum* of path products and vanishes only when every path does; in a chain it is a
    single product and vanishes when any factor does.
    """
    rng = np.random.default_rng(seed)
    rows, par, seq = [], [], []
    for n in range(1, max_paths + 1):
        x = np.ones((trials, 1))
        w = rng.normal(0.0, scale, (trials, 1))
        v = rng.normal(0.0, scale, (trials, n))
        c = rng.normal(0.0, scale, (trials, n))
        u = rng.normal(0.0, 1.0, (trials, n))
        g_par = _dE_dw(parallel_net, x, w, v, c, u)
        g_seq = _dE_dw(sequential_net, x, w, v, c, u)
        paths = path_products(x, w, v, c, u)
        dead_paths = float(np.mean(np.abs(paths) < tol))
        par.append(float(np.mean(np.abs(g_par) < tol)))
        seq.append(float(np.mean(np.abs(g_seq) < tol)))
        rows.append({"units n": n, "P(dE/dw~0) parallel": par[-1],
                     "P(dE/dw~0) sequential": seq[-1], "P(one path ~0)": dead_paths,
                     "median |dE/dw| parallel": float(np.median(np.abs(g_par))),
                     "median |dE/dw| sequential": float(np.median(np.abs(g_seq)))})
    # one worked example of the three-unit network: the gradient is the sum of 3 products
    ex = np.random.default_rng(seed + 1)
    x1, w1 = np.ones((1, 1)), ex.normal(0, 1, (1, 1))
    v1, c1, u1 = ex.normal(0, 1, (1, 3)), ex.normal(0, 1, (1, 3)), ex.normal(0, 1, (1, 3))
    prods = path_products(x1, w1, v1, c1, u1)[0]
    g = _dE_dw(parallel_net, x1, w1, v1, c1, u1)[0]
    notes = [f"|dE/dw| < {tol:g} counted as ~0, over {trials} random initialisations "
             f"(weights ~ N(0, {scale:g}²)).",
             "three-unit example: path products " + ", ".join(f"{p:+.6f}" for p in prods) +
             f"; sum {prods.sum():+.6f}; autograd dE/dw {g:+.6f}"]
    return FlowResult("parallel", rows, list(rows[0]), notes,
                      {"n": list(range(1, max_paths + 1)), "parallel": par, "sequential": seq,
                       "paths": prods, "grad": g}, _plot_parallel)


def _plot_parallel(result: FlowResult, path: Path) -> Path:
    d = result.data
    fig, (ax,) = new_figure()
    ax.plot(d["n"], d["parallel"], "o-", ms=4, label="n units in parallel (sum of n paths)")
    ax.plot(d["n"], d["sequential"], "s-", ms=4, label="n units in a chain (one path)")
    ax.set_xlabel("number of units n")
    ax.set_ylabel("fraction of initialisations with dE/dw ≈ 0")
    ax.set_ylim(0, 1)
    ax.set_title("parallel paths keep the gradient alive", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
