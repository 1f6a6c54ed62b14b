"""Lab ``augmentation``: the same small training set with and without random shifts and
flips, and what they do to the train/test gap of LeNet-5."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...backend import manual_seed
from ...data import Compose, RandomCrop, RandomHorizontalFlip, standardize_mnist
from ...models import lenet5
from ...optim import Adam
from ...train import model_accuracy
from ..plots import new_figure, save_figure
from ..result import FlowResult
from .common import digits, fit

__all__ = ["augmentation", "ARMS"]

#: the value of a blank pixel in the standardised digits: what a shift moves in at the edge
BACKGROUND = float(standardize_mnist(np.zeros(1, np.uint8))[0])
#: arm -> the training transform (each image of each batch gets its own draw)
ARMS: dict[str, Any] = {
    "none": None,
    "random shifts (+-2 px)": RandomCrop(28, padding=2, fill=BACKGROUND),
    "shifts + horizontal flips": Compose([RandomCrop(28, padding=2, fill=BACKGROUND),
                                          RandomHorizontalFlip()]),
}


def augmentation(quick: bool = False, seed: int = 0,
                 cache_dir: str | Path | None = None) -> FlowResult:
    """LeNet-5 trained from the same initial weights on ``per_class`` images of each digit
    (Adam, lr 1e-3), once per arm of :data:`ARMS`, tested every epoch on the test digits.

    Columns: final train accuracy (on the un-augmented training images), test accuracy, and
    their gap. Flipping a digit left-right can turn it into another symbol (a mirrored 2
    or 7 is not a digit), so the flip arm tests whether an augmentation respects the labels.
    """
    per_class, epochs = (20, 8) if quick else (50, 30)
    x, y = digits("train", per_class, seed=seed)
    xt, yt = digits("test")
    rows, curves = [], {}
    for name, transform in ARMS.items():
        manual_seed(seed)
        model = lenet5()
        history = fit(model, Adam(model.parameters(), lr=1e-3), x, y, epochs, seed=seed,
                      transform=transform, val=(xt, yt))
        train_acc, test_acc = model_accuracy(model, x, y), model_accuracy(model, xt, yt)
        curves[name] = {"train": history["accuracy"], "test": history["val_accuracy"]}
        rows.append({"augmentation": name, "train acc": train_acc, "test acc": test_acc,
                     "gap": train_acc - test_acc})
    none, shifts, flips = rows
    notes = [f"{per_class} training images per digit ({len(x)} in all), {epochs} epochs of Adam "
             f"(lr 1e-3, batch 32), LeNet-5 from the same initial weights in every arm; tested "
             f"on all {len(xt)} test digits",
             f"Random shifts change the gap from {none['gap']:.3f} to {shifts['gap']:.3f} and the "
             f"test accuracy from {none['test acc']:.1%} to {shifts['test acc']:.1%}; adding "
             f"flips gives {flips['test acc']:.1%}."]
    return FlowResult("augmentation", rows, list(rows[0]), notes,
                      {"curves": curves, "epochs": epochs}, _plot_augmentation)


def _plot_augmentation(result: FlowResult, path: Path) -> Path:
    fig, (ax,) = new_figure(size=(6.0, 3.8))
    for i, (name, c) in enumerate(result.data["curves"].items()):
        epochs = np.arange(1, len(c["test"]) + 1)
        ax.plot(epochs, c["test"], color=f"C{i}", label=f"{name}: test")
        ax.plot(epochs, c["train"], color=f"C{i}", linestyle="--",
                label=f"{name}: training batches")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Data augmentation on a small training set (LeNet-5)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
