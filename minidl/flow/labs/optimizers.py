"""Lab ``optimizers``: SGD, momentum, Nesterov, Adam, Nadam and RMSprop, each with a constant
learning rate and with the 1cycle schedule, on LeNet-5 in a fixed budget; and the
learning-rate range test that 1cycle's users run to pick the peak rate."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import tensor
from ...backend import manual_seed
from ...models import lenet5
from ...optim import SGD, Adam, Nadam, RMSprop
from ...optim.lr_scheduler import OneCycleLR
from ...train import model_accuracy
from ..plots import new_figure, save_figure, smooth
from ..result import FlowResult
from .common import digits, fit

__all__ = ["optimizers", "OPTIMIZERS", "lr_range_test"]

BATCH = 32
#: name -> (optimiser factory over parameters and an lr, its constant lr)
OPTIMIZERS: dict[str, tuple[Callable[[Any, float], Any], float]] = {
    "SGD": (lambda p, lr: SGD(p, lr=lr), 0.05),
    "momentum": (lambda p, lr: SGD(p, lr=lr, momentum=0.9), 0.01),
    "Nesterov": (lambda p, lr: SGD(p, lr=lr, momentum=0.9, nesterov=True), 0.01),
    "Adam": (lambda p, lr: Adam(p, lr=lr), 1e-3),
    "Nadam": (lambda p, lr: Nadam(p, lr=lr), 2e-3),
    "RMSprop": (lambda p, lr: RMSprop(p, lr=lr), 1e-3),
}


def lr_range_test(x: np.ndarray, y: np.ndarray, seed: int, steps: int,
                  lr_min: float = 1e-4, lr_max: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Smith's range test with momentum SGD on a fresh LeNet-5: the lr grows geometrically
    from ``lr_min`` to ``lr_max`` over ``steps`` batches; returns (lrs, losses), stopping
    when the loss passes four times its best (the rate is then far too high)."""
    manual_seed(seed)
    model = lenet5()
    opt = SGD(model.parameters(), lr=lr_min, momentum=0.9)
    lrs = np.geomspace(lr_min, lr_max, steps)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    for lr in lrs:
        idx = rng.integers(0, len(x), BATCH)
        opt.param_groups[0]["lr"] = float(lr)
        opt.zero_grad()
        loss = F.cross_entropy(model(tensor(x[idx])), tensor(y[idx]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if not np.isfinite(losses[-1]) or losses[-1] > 4 * min(losses):
            break
    return lrs[:len(losses)], np.asarray(losses)


def optimizers(quick: bool = False, seed: int = 0,
               cache_dir: str | Path | None = None) -> FlowResult:
    """Every optimiser of :data:`OPTIMIZERS` trains LeNet-5 from the same initial weights for
    the same number of epochs, once at its constant lr and once with ``OneCycleLR`` peaking
    at 4x that lr. Columns: the mean training loss of the last epoch's tenth and the test
    accuracy reached in the budget."""
    per_class, epochs = (30, 2) if quick else (200, 3)
    x, y = digits("train", per_class, seed=seed)
    xt, yt = digits("test")
    steps_per_epoch = -(-len(x) // BATCH)
    rows, curves = [], {}
    for name, (make, lr) in OPTIMIZERS.items():
        for schedule in ("constant", "1cycle"):
            manual_seed(seed)
            model = lenet5()
            opt = make(model.parameters(), lr)
            scheduler = OneCycleLR(opt, max_lr=4 * lr, total_steps=epochs * steps_per_epoch) \
                if schedule == "1cycle" else None
            losses: list[float] = []
            fit(model, opt, x, y, epochs, batch_size=BATCH, seed=seed, scheduler=scheduler,
                step_losses=losses)
            curves[(name, schedule)] = losses
            tail = max(1, steps_per_epoch // 10)
            rows.append({"optimizer": name, "schedule": schedule, "lr": lr,
                         "final loss": float(np.mean(losses[-tail:])),
                         "test acc": model_accuracy(model, xt, yt)})
    lrs, range_losses = lr_range_test(x, y, seed, 60 if quick else 200)
    best = max(rows, key=lambda r: r["test acc"])
    by = {(r["optimizer"], r["schedule"]): r["test acc"] for r in rows}
    wins = sum(by[(n, "1cycle")] > by[(n, "constant")] for n in OPTIMIZERS)
    notes = [f"LeNet-5, {per_class} training images per digit ({len(x)} in all), {epochs} epochs "
             f"of batch {BATCH} ({epochs * steps_per_epoch} steps) for every run; 1cycle peaks "
             "at 4x the constant lr; 'final loss' averages the last tenth of an epoch",
             f"Best in this budget: {best['optimizer']} with {best['schedule']} at "
             f"{best['test acc']:.1%}; 1cycle beats the constant rate for {wins} of "
             f"{len(OPTIMIZERS)} optimisers.",
             "Range test (momentum SGD): the loss is lowest at lr "
             f"{lrs[np.argmin(range_losses)]:.3g}; "
             "1cycle's users pick a peak somewhat below that."]
    return FlowResult("optimizers", rows, list(rows[0]), notes,
                      {"curves": curves, "range": (lrs, range_losses)}, _plot_optimizers)


def _plot_optimizers(result: FlowResult, path: Path) -> Path:
    fig, axes = new_figure(ncols=3, size=(4.4, 3.8))
    for ax, schedule in zip(axes, ("constant", "1cycle")):
        for i, name in enumerate(OPTIMIZERS):
            losses = result.data["curves"][(name, schedule)]
            ax.plot(np.arange(len(smooth(losses))) + 1, smooth(losses), color=f"C{i}", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (moving average of 10)")
        ax.set_title(f"LeNet-5, {schedule} learning rate", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    lrs, losses = result.data["range"]
    ax = axes[2]
    ax.plot(lrs, losses, color="C0", label="momentum SGD")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (grows every step)")
    ax.set_ylabel("training loss of the batch")
    ax.set_title("Learning-rate range test", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
