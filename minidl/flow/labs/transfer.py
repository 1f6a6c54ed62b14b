"""Lab ``transfer``: when pretrained features help, read off accuracy against data size.

LeNet-5 is pretrained on digits 0-4 (cached). Two target tasks, both the five classes 5-9:
the **similar** one is the digits themselves; the **different** one is the same digits under
one fixed random permutation of the 784 pixels. The permutation keeps every bit of the
information (a net trained from scratch can still learn it) but destroys what the pretrained
convolutions detect, local strokes and edges, so it is "different" at exactly the level the
lecture means: low-level features that do not carry over. (Inverting or rotating keeps
strokes local, and a tanh net partly absorbs a sign flip, so those would be milder.)

On each task six ways to learn from ``n`` labelled images per class, each for the same
number of Adam steps: from scratch; a new linear head on the frozen 84-d codes of the layer
below the head (the lectures' "CNN codes"); a linear head on the frozen 400 outputs of the
convolutions (S4), the lectures' "earlier layers" for a different task; fine-tuning the
fully connected top (C5, F6 and the head) over frozen convolutions; fine-tuning everything
with the pretrained layers at a 10x smaller learning rate; fine-tuning everything at the
head's large learning rate (the lectures' warning). A control, a linear head on the S4
outputs of an untrained LeNet-5, separates what pretraining gives from what any fixed
features with a linear head give when the data are few.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ... import nn
from ...autograd import no_grad, tensor
from ...backend import manual_seed
from ...io import CheckpointError, load, save
from ...models import extract_features, freeze, param_groups, replace_head
from ...models.lenet import lenet5
from ...optim import Adam
from ...train import model_accuracy
from ..plots import new_figure, save_figure, style_for
from ..result import FlowResult
from .common import digits, fit

__all__ = ["transfer", "METHODS"]

#: the five ways to learn the target task, in the order of the table and the legend
METHODS = ("from scratch", "CNN codes (F6, 84-d) + linear", "conv codes (S4, 400-d) + linear",
           "fine-tune top (convs frozen)", "fine-tune all, body lr / 10",
           "fine-tune all, same large lr", "control: untrained conv codes + linear")
LR, HEAD_LR = 1e-3, 1e-2
CONV_PREFIXES = ["features.1", "features.4"]  # C1 and C3, the convolutions of lenet5()
S4 = 8  # lenet5().features[:8] ends with S4 flattened: the 400 outputs of the convolutions
_CACHE_VERSION = 1


def transfer(quick: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
             shots: tuple[int, ...] | None = None, pretrain_epochs: int | None = None,
             steps: int | None = None) -> FlowResult:
    """Accuracy on digits 5-9 (similar) and pixel-permuted 5-9 (different) against the
    number of labelled images per class, for the six :data:`METHODS` and the control.

    Pretraining: ``lenet5(5)`` on all 2,000 training digits 0-4 for ``pretrain_epochs`` of
    Adam(1e-3), batch 32, kept in ``cache_dir`` (a corrupt or mismatched file is retrained).
    Each target training runs ``steps`` Adam steps at batch min(32, N); sizes up to 5 per
    class are averaged over three draws of the images. Rows: one per task and method, a
    column of test accuracy (500 test digits 5-9) per size.
    """
    shots = shots or ((1, 20) if quick else (1, 5, 20, 100, 400))
    pretrain_epochs = pretrain_epochs or (1 if quick else 8)
    steps = steps or (40 if quick else 300)
    xs, ys = digits("train", classes=range(5))
    xt, yt = digits("test", classes=range(5, 10))
    if quick:
        xt, yt = xt[::2], yt[::2]
    pretrained, pre_acc = _pretrained(xs, ys, pretrain_epochs, seed, cache_dir)
    perm = np.random.default_rng(seed + 7).permutation(28 * 28)
    tasks = {"similar (digits 5-9)": lambda x: x,
             "different (5-9, pixels permuted)":
                 lambda x: x.reshape(len(x), -1)[:, perm].reshape(x.shape)}
    rows, acc = [], {}
    for task, change in tasks.items():
        for method in METHODS:
            row: dict[str, Any] = {"task": task, "method": method}
            for n in shots:
                draws = 3 if n <= 5 else 1
                scores = []
                for d in range(draws):
                    x, y = digits("train", per_class=n, classes=range(5, 10), seed=seed + d)
                    scores.append(_train(method, pretrained, change(x), y - 5, change(xt),
                                         yt - 5, steps, seed + d))
                row[_col(n)] = acc[task, method, n] = float(np.mean(scores))
            rows.append(row)
    notes = _notes(acc, shots, tasks, pre_acc, pretrain_epochs, steps)
    return FlowResult("transfer", rows, ["task", "method", *map(_col, shots)], notes,
                      {"acc": acc, "shots": shots, "tasks": list(tasks)}, _plot_transfer)


def _col(n: int) -> str:
    return f"{n}/class" if n < 400 else "all (400/class)"


def _pretrained(x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
                cache_dir: str | Path | None) -> tuple[dict[str, np.ndarray], float]:
    """The state dict of lenet5(5) trained on digits 0-4, and its test accuracy on 0-4;
    read from ``cache_dir`` when a matching file is there, else trained and saved."""
    meta = {"version": _CACHE_VERSION, "epochs": epochs, "seed": seed, "images": len(x)}
    path = Path(cache_dir) / f"lab-transfer-pretrained-s{seed}-e{epochs}.npz" \
        if cache_dir is not None else None
    model = lenet5(num_classes=5)
    if path is not None and path.exists():
        try:
            saved = load(path)
            if saved["meta"] == meta:
                model.load_state_dict(saved["state"])
                return saved["state"], float(saved["accuracy"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            pass  # a corrupt or foreign cache: retrain and overwrite it
    manual_seed(seed)
    model = lenet5(num_classes=5)
    fit(model, Adam(model.parameters(), lr=LR), x, y, epochs, batch_size=32, seed=seed)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    accuracy = model_accuracy(model, *digits("test", classes=range(5)))
    if path is not None:
        save({"meta": meta, "state": state, "accuracy": accuracy}, path)
    return state, accuracy


def _train(method: str, pretrained: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
           x_test: np.ndarray, y_test: np.ndarray, steps: int, seed: int) -> float:
    """Train one way for ``steps`` Adam steps on (x, y); test accuracy on (x_test, y_test)."""
    batch = min(32, len(x))
    epochs = max(1, round(steps / math.ceil(len(x) / batch)))
    manual_seed(seed + 1)
    model = lenet5(num_classes=5)
    if method == "from scratch":
        fit(model, Adam(model.parameters(), lr=LR), x, y, epochs, batch, seed)
        return model_accuracy(model, x_test, y_test)
    if method != "control: untrained conv codes + linear":
        model.load_state_dict(pretrained)
    replace_head(model, 5)  # new classes: a new, randomly initialised head
    # a frozen body needs one forward pass: a linear head trains on the codes themselves
    if method == "CNN codes (F6, 84-d) + linear":
        freeze(model, depth=-1)
        codes = extract_features(model, x).numpy()
        fit(model.classifier, Adam(model.classifier.parameters(), lr=HEAD_LR), codes, y,
            epochs, batch, seed)
        return model_accuracy(model, x_test, y_test)
    if method in ("conv codes (S4, 400-d) + linear", "control: untrained conv codes + linear"):
        convs = model.features[:S4]
        convs.eval()
        with no_grad():
            codes, test_codes = convs(tensor(x)).numpy(), convs(tensor(x_test)).numpy()
        head = nn.Linear(codes.shape[1], 5)
        fit(head, Adam(head.parameters(), lr=HEAD_LR), codes, y, epochs, batch, seed)
        return model_accuracy(head, test_codes, y_test)
    if method == "fine-tune top (convs frozen)":
        freeze(model, CONV_PREFIXES)
        opt = Adam(param_groups(model, lr=HEAD_LR, body_lr=LR), lr=HEAD_LR)
    elif method == "fine-tune all, body lr / 10":
        opt = Adam(param_groups(model, lr=HEAD_LR, body_lr=LR), lr=HEAD_LR)
    else:  # "fine-tune all, same large lr"
        opt = Adam(model.parameters(), lr=HEAD_LR)
    fit(model, opt, x, y, epochs, batch, seed)
    return model_accuracy(model, x_test, y_test)


def _best(acc: dict, task: str, n: int) -> tuple[str, float]:
    return max(((m, acc[task, m, n]) for m in METHODS), key=lambda t: t[1])


def _notes(acc: dict, shots: tuple[int, ...], tasks: dict, pre_acc: float, epochs: int,
           steps: int) -> list[str]:
    """The lecture's scenario table, cell by cell, against what was measured."""
    similar, different = list(tasks)
    small, large = shots[0], shots[-1]
    scratch, codes, conv, top, small_lr, big_lr, control = METHODS
    notes = [f"Pretrained on digits 0-4 for {epochs} epochs ({pre_acc:.1%} on their test "
             f"digits); every target training runs {steps} Adam steps (scratch lr {LR:g}, new "
             f"heads {HEAD_LR:g}, pretrained layers {LR:g} unless 'same large lr'); test: "
             "digits 5-9 of the test split. Sizes up to 5 per class: mean of 3 draws."]
    # the lecture's cell -> (the method it recommends, its words)
    lecture = {(similar, small): (codes, "a linear classifier on the CNN codes"),
               (similar, large): (top, "fine-tuning some top layers, or all"),
               (different, small): (conv, "trouble: a linear classifier on features of an "
                                    "earlier layer"),
               (different, large): (small_lr, "fine-tuning all layers (or training from "
                                    "scratch)")}
    for (task, n), (advised, words) in lecture.items():
        best, value = _best(acc, task, n)
        control_gain = acc[task, conv, n] - acc[task, control, n]
        size = "small" if n == small else "large"
        gain = max(acc[task, m, n] for m in METHODS[1:-1]) - acc[task, scratch, n]
        holds = acc[task, advised, n] >= value - 0.01
        notes.append(
            f"{size} and {task.split()[0]} ({n}/class): the lecture advises {words}. That "
            f"gives {acc[task, advised, n]:.1%}; the best is {best} ({value:.1%}); scratch "
            f"{acc[task, scratch, n]:.1%}. "
            + ("The advice holds (within 1 point of the best)" if holds
               else f"CONTRADICTS the lecture: the advice is {value - acc[task, advised, n]:.1%}"
                    " below the best")
            + (f"; transfer beats scratch by {gain:+.1%}" if gain > 0.005 else
               f"; no pretrained method beats scratch (best {gain:+.1%})")
            + f", and pretrained conv codes beat untrained ones by {control_gain:+.1%}.")
    gaps = [acc[similar, small_lr, n] - acc[similar, big_lr, n] for n in shots]
    notes.append("The warning (same large lr for the pretrained layers), similar task: "
                 "fine-tune all at body lr / 10 minus at the same large lr = "
                 + ", ".join(f"{g:+.1%} ({n}/class)" for g, n in zip(gaps, shots))
                 + (": the large rate loses what pretraining gave, as the lecture warns."
                    if min(gaps) > 0 else
                    ": CONTRADICTS the lecture's warning, the large rate does better at every "
                    "size." if max(gaps) < 0 else
                    ": the large rate loses at some sizes and wins at others."))
    notes.append("CNN codes against conv codes (a linear head on F6 vs on S4), similar task: "
                 + ", ".join(f"{acc[similar, codes, n]:.1%} vs {acc[similar, conv, n]:.1%} "
                             f"({n}/class)" for n in shots)
                 + ". The top layer of a net trained on five classes is specific to those "
                 "five; the convolutions' strokes are what carries over."
                 if all(acc[similar, conv, n] > acc[similar, codes, n] for n in shots) else
                 "CNN codes (F6) are not worse than conv codes (S4) at every size here.")
    return notes


def _plot_transfer(result: FlowResult, path: Path) -> Path:
    acc, shots = result.data["acc"], result.data["shots"]
    fig, axes = new_figure(ncols=2, size=(5.2, 4.0))
    for ax, task in zip(axes, result.data["tasks"]):
        for i, method in enumerate(METHODS):
            ax.plot(shots, [acc[task, method, n] for n in shots], marker="o", markersize=4,
                    label=method, **style_for(i, dashed=method.endswith("large lr")))
        ax.axhline(0.2, color="grey", linewidth=0.8, linestyle=":", label="chance (5 classes)")
        ax.set_xscale("log")
        ax.set_xticks(shots)
        ax.set_xticklabels([str(n) for n in shots])
        ax.set_ylim(0, 1)
        ax.set_xlabel("labelled training images per class (log scale)")
        ax.set_ylabel("test accuracy")
        ax.set_title(task, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Transfer from digits 0-4: accuracy against data size", fontsize=11)
    return save_figure(fig, path)
