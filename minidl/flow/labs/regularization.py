"""Lab ``regularization``: a small training set that overfits, and what L1, L2, dropout and
max-norm do to the train/test gap and to the weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ... import nn
from ...backend import manual_seed
from ...optim import SGD, constraints, regularizers
from ...train import model_accuracy
from ..plots import new_figure, save_figure
from ..result import FlowResult
from .common import digits, fit

__all__ = ["regularization", "METHODS"]

#: method -> what it adds to every Linear layer (Keras's conventions: l2(c) = c * sum(w**2))
METHODS = {
    "none": {},
    "L1 (5e-4)": {"weight_regularizer": regularizers.l1(5e-4)},
    "L2 (5e-3)": {"weight_regularizer": regularizers.l2(5e-3)},
    "dropout (0.5)": {"dropout": 0.5},
    "max-norm (0.5)": {"weight_constraint": constraints.max_norm(0.5, axis=1)},
}
NEAR_ZERO = 1e-3


def _mlp(dropout: float = 0.0, **layer_kw: Any) -> nn.Sequential:
    """784 -> 256 -> 256 -> 10 ReLU MLP, with dropout after each hidden layer if asked."""
    layers: list[Any] = []
    for n_in, n_out in ((784, 256), (256, 256)):
        layers += [nn.Linear(n_in, n_out, **layer_kw), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(256, 10, **layer_kw))


def regularization(quick: bool = False, seed: int = 0,
                   cache_dir: str | Path | None = None) -> FlowResult:
    """Each method trains the same MLP from the same initial weights on ``per_class``
    images of each digit (SGD, momentum 0.9, lr 0.02) for a fixed number of epochs.

    Columns: train and test accuracy and their gap; the first layer's weight norm; the
    share of its weights with |w| < 1e-3 (L1 drives the least useful ones to zero; L2 only
    shrinks them); the largest L2 norm of a first-layer unit's incoming weights (max-norm
    caps it).
    """
    per_class, epochs = (20, 40) if quick else (50, 100)
    x, y = digits("train", per_class, flat=True, seed=seed)
    xt, yt = digits("test", flat=True)
    rows, weights = [], {}
    for name, kw in METHODS.items():
        manual_seed(seed)           # every method starts from the same weights
        model = _mlp(**kw)
        fit(model, SGD(model.parameters(), lr=0.02, momentum=0.9), x, y, epochs, seed=seed)
        w = model[0].weight.numpy()
        weights[name] = w
        train_acc, test_acc = model_accuracy(model, x, y), model_accuracy(model, xt, yt)
        rows.append({"method": name, "train acc": train_acc, "test acc": test_acc,
                     "gap": train_acc - test_acc, "|W1|": float(np.linalg.norm(w)),
                     f"|w| < {NEAR_ZERO:g}": float((np.abs(w) < NEAR_ZERO).mean()),
                     "max unit norm": float(np.linalg.norm(w, axis=1).max())})
    best = max(rows[1:], key=lambda r: r["test acc"])
    none = rows[0]
    notes = [f"{per_class} training images per digit ({len(x)} in all), {epochs} epochs of SGD "
             f"(momentum 0.9, lr 0.02, batch 32); tested on all {len(xt)} test digits",
             f"Without regularisation the net fits its training set ({none['train acc']:.0%}) "
             f"and tests at {none['test acc']:.1%}; the best here is {best['method']} at "
             f"{best['test acc']:.1%} ({best['test acc'] - none['test acc']:+.1%}). L1 leaves "
             f"{rows[1][f'|w| < {NEAR_ZERO:g}']:.0%} of the "
             f"first layer's weights near zero, L2 {rows[2][f'|w| < {NEAR_ZERO:g}']:.0%}."]
    gain = best["test acc"] - none["test acc"]
    if gain < 0.01:
        notes.append(f"No regulariser improves the test accuracy by a point here (at best "
                     f"{gain:+.1%}): the lectures' 'they fight overfitting' does not show on this "
                     "set, although each changes the weights as it should.")
    return FlowResult("regularization", rows, list(rows[0]), notes, {"weights": weights},
                      _plot_regularization)


def _plot_regularization(result: FlowResult, path: Path) -> Path:
    fig, (ax1, ax2) = new_figure(ncols=2, size=(5.2, 3.8))
    names = [r["method"] for r in result.rows]
    pos = np.arange(len(names))
    ax1.bar(pos - 0.2, [r["train acc"] for r in result.rows], 0.4, label="train")
    ax1.bar(pos + 0.2, [r["test acc"] for r in result.rows], 0.4, label="test")
    ax1.set_xticks(pos)
    ax1.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax1.set_ylim(0.5, 1.02)
    ax1.set_ylabel("accuracy")
    ax1.set_title("Train/test gap per regulariser", fontsize=10)
    ax1.legend(fontsize=8)
    bins = np.logspace(-7, 0, 50)
    for i, name in enumerate(list(METHODS)[:3]):
        w = np.abs(result.data["weights"][name]).ravel()
        ax2.hist(np.clip(w, 1e-7, None), bins=bins, histtype="step", label=name, color=f"C{i}")
    ax2.set_xscale("log")
    ax2.set_xlabel("|w| of the first layer (values below 1e-7 in the first bin)")
    ax2.set_ylabel("number of weights")
    ax2.set_title("L1 zeroes weights, L2 shrinks them", fontsize=10)
    ax2.legend(fontsize=8)
    return save_figure(fig, path)
