"""The gradient-flow experiments of the lectures, each a function returning a FlowResult.

=========  ===================================================================
neuron     the single tanh neuron ``tanh(x + w)`` with its input shifted 0..6
depth      MLP depth sweep: activation x init x BatchNorm, decay factor per layer
parallel   parallel paths (Inception) against a sequential chain: how often dE/dw ~ 0
residual   plain against residual nets at depths 20 and 56: flow at init, training
bn         a deep sigmoid net with and without BatchNorm
=========  ===================================================================

Every experiment runs in under two minutes on two CPU cores at its default size;
``result.table()`` is its table and ``result.plot(path)`` its figure.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, tensor
from .plots import layer_norm_plot, new_figure, save_figure, style_for
from .result import FlowResult

__all__ = ["neuron", "depth", "parallel", "residual", "bn", "demo_figure", "parallel_net",
           "sequential_net", "path_products", "make_mlp", "make_resnet_mlp", "init_weights",
           "mnist_inputs", "sgd_train", "measure_flow", "zero_init_residual", "ACTIVATIONS",
           "INITS"]


def _f64(a: Any, requires_grad: bool = False) -> Tensor:
    return tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# ---- 1. the single saturated tanh neuron ---------------------------------------------------

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
    from ..nn import Normalization  # noqa: PLC0415 - flow sits above nn

    shifts = list(np.linspace(0.0, 6.0, 13) if shifts is None else shifts)
    base = np.random.default_rng(seed).standard_normal((samples, 1)) * spread
    rows, single, raw, normed = [], [], [], []
    for s in shifts:
        wt = _f64(w, requires_grad=True)
        F.tanh(_f64([s]) + wt).sum().backward()
        g_single = float(wt.grad.item())
        closed = 1.0 - np.tanh(s + w) ** 2

        x = _f64(base + s)
        wt = _f64(w, requires_grad=True)
        F.tanh(x + wt).mean().backward()
        g_raw = float(wt.grad.item())

        norm = Normalization(dtype=np.float64).adapt(x)
        wt = _f64(w, requires_grad=True)
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


# ---- 3. parallel paths ---------------------------------------------------------------------

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
    wt = _f64(w, requires_grad=True)
    net(_f64(x), wt, _f64(v), _f64(c), _f64(u)).sum().backward()
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



# ---- shared pieces: MLPs, data, a plain SGD loop ------------------------------------------

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("naive", "glorot", "he")


def init_weights(model: Any, init: str) -> Any:
    """Re-initialise every Linear/Conv weight of ``model`` in place; biases become 0.

    ``init``: 'naive' N(0, 0.01²) (the "small random numbers" W = 0.01 * randn of the
    lectures), 'glorot' (Xavier normal, std sqrt(2 / (fan_in + fan_out))) or 'he'
    (Kaiming normal, std sqrt(2 / fan_in)). BatchNorm keeps scale 1 and shift 0.
    """
    from .. import nn  # noqa: PLC0415
    fill = {"naive": lambda w: nn.init.normal_(w, 0.0, 0.01),
            "glorot": nn.init.xavier_normal_,
            "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")}
    if init not in fill:
        raise ValueError(f"init_weights: init must be one of {sorted(fill)}, got {init!r}")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fill[init](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def make_mlp(depth: int, width: int = 32, activation: str = "sigmoid", init: str = "naive",
             batchnorm: bool = False, residual: bool = False, in_features: int = 784,
             classes: int = 10) -> Any:
    """An MLP with ``depth`` Linear layers: (N, in_features) -> (N, classes) logits.

    Plain: ``[Linear -> (BatchNorm1d) -> act] x (depth-1) -> Linear``.
    Residual (``residual=True``, even ``depth``): a Linear stem, ``(depth-2)/2`` blocks
    ``x + Linear(act(Linear(x)))`` (``nn.Residual``; with ``batchnorm`` each Linear is
    followed by a BatchNorm1d), then the output Linear. The identity path from the stem to
    the head carries no activation (as in pre-activation ResNets and transformer MLPs), so a
    squashing activation cannot shrink it; both forms have ``depth`` weight layers.
    """
    from .. import nn  # noqa: PLC0415
    if depth < 2:
        raise ValueError(f"make_mlp: depth must be at least 2, got {depth}")
    if residual and depth % 2:
        raise ValueError(f"make_mlp: a residual MLP has 2 + 2 * blocks layers; depth {depth} "
                         "is odd")
    if activation not in ACTIVATIONS:
        raise ValueError(f"make_mlp: activation must be one of {ACTIVATIONS}, got {activation!r}")
    act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[activation]

    def linear(cin: int) -> list:
        if batchnorm:
            return [nn.Linear(cin, width, bias=False), nn.BatchNorm1d(width)]
        return [nn.Linear(cin, width)]

    if residual:
        layers = linear(in_features)
        for _ in range((depth - 2) // 2):
            layers.append(nn.Residual(nn.Sequential(*linear(width), act(), *linear(width))))
    else:
        layers = linear(in_features) + [act()]
        for _ in range(depth - 2):
            layers += linear(width) + [act()]
    layers.append(nn.Linear(width, classes))
    return init_weights(nn.Sequential(*layers), init)


def _on_device(a: np.ndarray) -> Tensor:
    """A batch on minidl's default device (``MINIDL_DEVICE=cuda`` runs the lab on a GPU;
    the models are built there too, since layers are created on the default device)."""
    from ..backend import get_default_device  # noqa: PLC0415
    return tensor(a, device=get_default_device())


_DATA: dict[tuple, tuple[Any, Any]] = {}


def mnist_inputs(split: str = "train", flat: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST subset as float32, normalised with MNIST's mean and std.

    ``flat``: (N, 784), else (N, 1, 28, 28); labels int64 (N,). Cached after the first call.
    """
    key = (split, flat)
    if key not in _DATA:
        from ..data import mnist_subset  # noqa: PLC0415
        x, y = mnist_subset(split)
        x = ((x.astype(np.float32) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
        _DATA[key] = (x.reshape(len(x), -1) if flat else x, y)
    return _DATA[key]


def sgd_train(model: Any, x: np.ndarray, y: np.ndarray, steps: int, lr: float = 0.05,
              batch: int = 64, seed: int = 0, loss_every: int = 1) -> list[float]:
    """Plain SGD (``p -= lr * grad``) with cross-entropy on random batches of (x, y).

    Returns the training loss of every ``loss_every``-th step (non-finite once diverged).
    Written out, not taken from ``minidl.optim``, so that the lab's loop is visible.
    """
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []
    model.train()
    for step in range(steps):
        idx = rng.integers(0, len(x), batch)
        model.zero_grad()
        loss = F.cross_entropy(model(_on_device(x[idx])), _on_device(y[idx]))
        value = float(loss.item())
        if step % loss_every == 0:
            losses.append(value)
        if not np.isfinite(value):
            losses.extend([float("nan")] * ((steps - step - 1) // loss_every))
            break
        loss.backward()
        for p in params:
            if p.grad is not None:
                p.data -= lr * p.grad.data
    return losses


def _fit_decay(norms: Sequence[float]) -> float:
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
    from .recorder import Recorder  # noqa: PLC0415
    model.zero_grad()
    with Recorder(model, layers) as rec:
        F.cross_entropy(model(_on_device(x)), _on_device(y)).backward()
    model.zero_grad()
    return rec


def _flow_summary(rec: Any) -> dict[str, Any]:
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
            "decay": _fit_decay(inner), "act_gain": _geo_mean(gains)}


# ---- 2. depth sweep ------------------------------------------------------------------------

def depth(depths: Sequence[int] = (2, 5, 10, 20, 50),
          activations: Sequence[str] = ACTIVATIONS, inits: Sequence[str] = INITS,
          batchnorm: Sequence[bool] = (False, True), width: int = 32, steps: int = 100,
          batch: int = 64, lr: float = 0.05, probe: int = 256, seed: int = 0) -> FlowResult:
    """MLP depth sweep on MNIST-subset inputs: how the weight-gradient norm changes from the
    last layer to the first, at initialisation and after ``steps`` SGD steps.

    For every (depth, activation, init, BatchNorm) the net is measured on a fixed batch of
    ``probe`` training images. Columns: ``|g first|`` the first layer's weight-gradient
    norm; ``ratio`` first/last layer; ``decay/layer`` the per-layer factor fitted to the
    log-norms of the hidden layers (exp of minus the slope; < 1 vanishes towards the input);
    ``act gain`` the geometric mean over layers of |grad at an activation's input| /
    |grad at its output| (sigmoid: at most 1/4, since sigmoid' <= 1/4); the same after
    training, and the training loss at the first and last step.
    """
    from ..backend import manual_seed  # noqa: PLC0415
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
                        s0 = _flow_summary(measure_flow(model, xp_, yp_))
                        losses = sgd_train(model, x, y, steps, lr, batch, seed) if steps else []
                        s1 = _flow_summary(measure_flow(model, xp_, yp_)) if steps else s0
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


# ---- 4. residual against plain ------------------------------------------------------------

def make_resnet_mlp(depth: int, width: int = 32, plain: bool = False, in_features: int = 784,
                    classes: int = 10) -> Any:
    """The MLP twin of ``cifar_resnet(depth)``: the same block structure with Linear layers.

    ``Sequential(stem, block_1, ..., block_n, head)`` with stem ``Linear-BN-ReLU``, ``n =
    (depth - 2) / 2`` blocks ``relu(x + BN(W2 relu(BN(W1 x))))`` (plain: without ``x +``)
    and a Linear head; He initialisation. (N, in_features) -> (N, classes).
    """
    from .. import nn  # noqa: PLC0415
    if depth < 4 or depth % 2:
        raise ValueError(f"make_resnet_mlp: depth must be even and >= 4 (2 + 2 * blocks), "
                         f"got {depth}")

    def body() -> Any:
        return nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width),
                             nn.ReLU(), nn.Linear(width, width, bias=False),
                             nn.BatchNorm1d(width))

    stem = nn.Sequential(nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width),
                         nn.ReLU())
    blocks = [nn.Sequential(body() if plain else nn.Residual(body()), nn.ReLU())
              for _ in range((depth - 2) // 2)]
    return init_weights(nn.Sequential(stem, *blocks, nn.Linear(width, classes)), "he")


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    from ..autograd import no_grad  # noqa: PLC0415
    model.eval()
    correct = 0
    with no_grad():
        for i in range(0, len(x), batch):
            logits = model(_on_device(x[i:i + batch])).numpy()
            correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    model.train()
    return correct / len(x)


def _smooth(values: Sequence[float], k: int = 10) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def _resnet_blocks(model: Any, arch: str) -> list:
    if arch == "mlp":
        return list(model.children())[1:-1]
    return [*model.layer1, *model.layer2, *model.layer3]


def zero_init_residual(model: Any) -> Any:
    """Set the scale of the last BatchNorm inside every ``nn.Residual`` block to 0, so each
    block starts as the identity (Goyal et al. 2017, "Accurate, large minibatch SGD")."""
    from .. import nn  # noqa: PLC0415
    for m in model.modules():
        if isinstance(m, nn.Residual):
            norms = [b for b in m.block.modules()
                     if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d))]
            if norms:
                nn.init.zeros_(norms[-1].weight)
    return model


def residual(depths: Sequence[int] = (20, 56), arch: str = "mlp", width: int = 32,
             steps: int = 500, batch: int = 64, lr: float = 0.05, probe: int = 256,
             zero_init: bool = True, seed: int = 0) -> FlowResult:
    """Plain against residual nets at each depth: per-block gradient norms at initialisation,
    then training loss over the same number of SGD steps on the MNIST subset.

    ``arch='mlp'`` (default) uses :func:`make_resnet_mlp` (the CIFAR ResNet's blocks with
    Linear layers, fast on a CPU); ``arch='cifar'`` uses ``minidl.models.cifar_resnet(depth,
    plain=...)`` itself on the 28x28 digits (1 input channel, widths ``width/4, width/2,
    width``; depths 6n+2; about 0.5 s (depth 20) to 1.5 s (depth 56) per step on a CPU).
    With ``zero_init`` the residual nets are also trained with :func:`zero_init_residual`.
    Columns: the gradient norm at the first block's output over the last block's at init,
    the training loss averaged over the first and the last 10% of steps, and the accuracy
    on the 1,000 held-out digits.
    """
    from ..backend import manual_seed  # noqa: PLC0415
    from .recorder import Recorder  # noqa: PLC0415
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
            plain = kind == "plain"
            if arch == "mlp":
                model = make_resnet_mlp(d, width, plain)
            else:
                from ..models import cifar_resnet  # noqa: PLC0415
                model = cifar_resnet(d, plain=plain, in_channels=1,
                                     widths=(width // 4, width // 2, width))
            if kind == "resnet-zero":
                zero_init_residual(model)
            blocks = _resnet_blocks(model, arch)
            model.zero_grad()
            with Recorder(model, layers=blocks) as rec:
                F.cross_entropy(model(_on_device(x[:probe])), _on_device(y[:probe])).backward()
            model.zero_grad()
            block_norms = [r["out_grad_norm"] for r in rec.step_rows(0)]
            losses = sgd_train(model, x, y, steps, lr, batch, seed)
            name = f"{kind}-{d}"
            curves[name] = {"blocks": block_norms, "losses": losses}
            rows.append({"net": name, "depth": d, "blocks": len(blocks),
                         "grad first/last block": block_norms[0] / block_norms[-1],
                         "loss start": float(np.mean(losses[:tail])),
                         "loss end": float(np.mean(losses[-tail:])),
                         "test acc": _accuracy(model, xt, yt)})
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
    notes.append(f"{steps} SGD steps (lr {lr:g}, batch {batch}), arch={arch}; 'loss start' and "
                 f"'loss end' average the first and last {tail} steps; resnet-zero = "
                 "zero_init_residual (each block starts as the identity)")
    return FlowResult("residual", rows, list(rows[0]), notes,
                      {"curves": curves, "steps": steps, "arch": arch}, _plot_residual)


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
        sm = _smooth(c["losses"])
        ax2.plot(np.arange(len(sm)) + (len(c["losses"]) - len(sm)), sm, label=name,
                 **styles[name])
    ax2.set_ylim(0, min(3.0, ax2.get_ylim()[1]))
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("training loss (moving average of 10)")
    ax2.set_title(f"training, arch={result.data['arch']}", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return save_figure(fig, path)


# ---- 5. BatchNorm restores the flow of a deep sigmoid net -----------------------------------

def bn(depth: int = 20, width: int = 32, inits: Sequence[str] = ("naive", "glorot"),
       steps: int = 200, batch: int = 64, lr: float = 0.05, probe: int = 256,
       seed: int = 0) -> FlowResult:
    """A ``depth``-layer sigmoid MLP with and without BatchNorm (Linear -> BN -> sigmoid), for
    each init: weight-gradient norms per layer at init, saturation, training loss, accuracy.
    """
    from ..backend import manual_seed  # noqa: PLC0415
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
                s0 = _flow_summary(rec)
                sig = [r for r in rec.step_rows(0) if r["type"] == "Sigmoid"]
                losses = sgd_train(model, x, y, steps, lr, batch, seed)
                s1 = _flow_summary(measure_flow(model, x[:probe], y[:probe]))
                name = f"sigmoid/{init}{' + BN' if use_bn else ''}"
                curves[name] = {"init": s0["norms"], "trained": s1["norms"], "losses": losses}
                rows.append({"net": name, "|g first| init": s0["norms"][0],
                             "ratio init": s0["ratio"], "decay/layer": s0["decay"],
                             "saturated": float(np.mean([r["saturated"] for r in sig])),
                             "act std": float(np.mean([r["act_std"] for r in sig])),
                             f"ratio @{steps}": s1["ratio"],
                             "loss start": float(np.mean(losses[:tail])),
                             "loss end": float(np.mean(losses[-tail:])),
                             "test acc": _accuracy(model, xt, yt)})
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
        sm = _smooth(c["losses"])
        ax2.plot(np.arange(len(sm)) + (len(c["losses"]) - len(sm)), sm, label=name,
                 **styles[name])
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("training loss (moving average of 10)")
    ax2.set_title("training", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return save_figure(fig, path)


# ---- the `minidl demo` figure ---------------------------------------------------------------

def demo_figure(path: str | Path = "gradient-flow.png", depth: int = 20, width: int = 32,
                probe: int = 128, seed: int = 0) -> Path:
    """Sigmoid against ReLU against BatchNorm against residual at ``depth`` layers: the
    weight-gradient norm of every layer at initialisation, one line each (log scale).

    sigmoid: Glorot init; ReLU: He init; sigmoid + BN: Glorot; residual: sigmoid, Glorot,
    :func:`make_mlp` with ``residual=True``. Takes about a second. Returns the PNG path.
    """
    from ..backend import manual_seed  # noqa: PLC0415
    x, y = mnist_inputs("train")
    nets = {"sigmoid (Glorot)": dict(activation="sigmoid", init="glorot"),
            "ReLU (He)": dict(activation="relu", init="he"),
            "sigmoid + BatchNorm": dict(activation="sigmoid", init="glorot", batchnorm=True),
            "sigmoid, residual": dict(activation="sigmoid", init="glorot", residual=True)}
    series = {}
    for label, kw in nets.items():
        manual_seed(seed)
        model = make_mlp(depth, width, **kw)
        norms = _flow_summary(measure_flow(model, x[:probe], y[:probe]))["norms"]
        ratio = norms[0] / norms[-1]
        series[f"{label}: first/last {ratio:.1e}"] = norms
    fig, (ax,) = new_figure(size=(6.4, 4.0))
    layer_norm_plot(ax, series, f"gradient flow at initialisation, {depth}-layer MLP on MNIST",
                    ylabel="weight-gradient L2 norm")
    return save_figure(fig, Path(path))
