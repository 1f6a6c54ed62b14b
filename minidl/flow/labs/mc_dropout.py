"""Lab ``mc-dropout``: Monte Carlo dropout's predictive mean and spread against one softmax
pass, on correct and misclassified digits, on blends of two digits, and as calibration."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ... import nn
from ...autograd import no_grad, tensor
from ...backend import manual_seed, to_numpy
from ...nn.dropout import mc_predict
from ...optim import Adam
from ...train import confusion_matrix, most_confused
from ..plots import new_figure, save_figure
from ..result import FlowResult
from .common import digits, fit

__all__ = ["mc_dropout"]

BINS = 10


def _net(p: float) -> nn.Sequential:
    """784 -> 256 -> 256 -> 10 ReLU MLP with dropout ``p`` after each hidden layer."""
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(256, 256), nn.ReLU(), nn.Dropout(p), nn.Linear(256, 10))


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


def calibration(conf: np.ndarray, correct: np.ndarray, bins: int = BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Reliability of confidences ``conf`` (N,) against ``correct`` (N,) booleans: per bin of
    equal width over [0, 1], (mean confidence, accuracy, count), and the expected
    calibration error sum_b n_b / N * |acc_b - conf_b|."""
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, conf, bins) / count
        acc = np.bincount(which, correct.astype(np.float64), bins) / count
    ece = float(np.nansum(count / count.sum() * np.abs(acc - mean_conf)))
    return mean_conf, acc, count, ece


def mc_dropout(quick: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
               p: float = 0.3, passes: int = 30) -> FlowResult:
    """Train a dropout MLP on the digits, then compare a single eval-mode softmax with the mean
    of ``passes`` Monte Carlo dropout passes (:func:`minidl.nn.dropout.mc_predict`).

    Rows: correct and misclassified test digits, and blends ``(a + b) / 2`` of two test
    digits of different classes. Columns: count, mean confidence (the top class's
    probability) of one pass and of the MC mean, the MC standard deviation of the top class's
    probability, and the predictive entropy of the MC mean.
    """
    per_class, epochs = (50, 5) if quick else (300, 15)
    x, y = digits("train", per_class, flat=True, seed=seed)
    xt, yt = digits("test", flat=True)
    manual_seed(seed)
    model = _net(p)
    fit(model, Adam(model.parameters(), lr=1e-3), x, y, epochs, seed=seed)
    probs = nn.Sequential(model, nn.Softmax(axis=1))
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(xt), (2, 4 * len(xt)))
    keep = yt[a] != yt[b]
    blends = (xt[a[keep]] + xt[b[keep]])[: len(xt) // 2] / 2
    single, mean, spread = {}, {}, {}
    for name, data in (("test", xt), ("blend", blends)):
        model.eval()
        with no_grad():
            single[name] = to_numpy(probs(tensor(data)).data)
        m, s = mc_predict(probs, data, n=passes)
        mean[name], spread[name] = to_numpy(m.data), to_numpy(s.data)
    pred = mean["test"].argmax(1)
    groups = {"correct": pred == yt, "misclassified": pred != yt}
    rows = []
    for name, mask in groups.items():
        rows.append(_row(name, single["test"][mask], mean["test"][mask], spread["test"][mask]))
    rows.append(_row("blend of two digits", single["blend"], mean["blend"], spread["blend"]))
    correct_single = single["test"].argmax(1) == yt
    cal = {"one pass": calibration(single["test"].max(1), correct_single),
           f"MC mean of {passes}": calibration(mean["test"].max(1), pred == yt)}
    confused = most_confused(confusion_matrix(yt, pred, 10), top=3)
    notes = [f"{per_class} training images per digit, {epochs} epochs of Adam (lr 1e-3); "
             f"dropout {p:g} after each hidden layer; {passes} MC passes per input; "
             f"{len(blends)} blends of two test digits of different classes",
             f"Test accuracy: one pass {correct_single.mean():.1%}, MC mean "
             f"{(pred == yt).mean():.1%}. Expected calibration error: one pass "
             f"{cal['one pass'][3]:.3f}, MC mean {cal[f'MC mean of {passes}'][3]:.3f}.",
             f"The MC spread of misclassified digits is {rows[1]['MC std']:.3f} against "
             f"{rows[0]['MC std']:.3f} for correct ones, and {rows[2]['MC std']:.3f} on blends.",
             "Most confused (true -> predicted, count): "
             + ", ".join(f"{t} -> {q} ({n})" for t, q, n in confused)]
    return FlowResult("mc-dropout", rows, list(rows[0]), notes,
                      {"calibration": cal,
                       "spread": {k: _top_std(mean["test"][m], spread["test"][m])
                                  for k, m in groups.items()}},
                      _plot_mc_dropout)


def _top_std(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The MC standard deviation of each row's top class."""
    return std[np.arange(len(mean)), mean.argmax(1)]


def _row(name: str, single: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    return {"inputs": name, "count": len(mean),
            "one-pass confidence": float(single.max(1).mean()) if len(mean) else float("nan"),
            "MC confidence": float(mean.max(1).mean()) if len(mean) else float("nan"),
            "MC std": float(_top_std(mean, std).mean()) if len(mean) else float("nan"),
            "MC entropy": float(_entropy(mean).mean()) if len(mean) else float("nan")}


def _plot_mc_dropout(result: FlowResult, path: Path) -> Path:
    fig, (ax1, ax2) = new_figure(ncols=2, size=(5.0, 3.8))
    ax1.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfect calibration")
    for i, (name, (conf, acc, count, ece)) in enumerate(result.data["calibration"].items()):
        ok = count > 0
        ax1.plot(conf[ok], acc[ok], marker="o", color=f"C{i}", label=f"{name} (ECE {ece:.3f})")
    ax1.set_xlabel(f"mean confidence in each of {BINS} bins (top-class probability)")
    ax1.set_ylabel("accuracy in the bin")
    ax1.set_title("Reliability diagram", fontsize=10)
    ax1.legend(fontsize=8)
    bins = np.linspace(0, 0.5, 26)
    for i, (name, values) in enumerate(result.data["spread"].items()):
        ax2.hist(values, bins=bins, density=True, histtype="step", color=f"C{i + 2}", label=name)
    ax2.set_xlabel("MC std of the top class's probability")
    ax2.set_ylabel("density")
    ax2.set_title("MC dropout spread: correct vs. misclassified", fontsize=10)
    ax2.legend(fontsize=8)
    return save_figure(fig, path)
