"""What the labs share: balanced subsets of the bundled digits and one training call."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...data import DataLoader
from ...train import History, LambdaCallback, Trainer
from ..nets import mnist_inputs

__all__ = ["digits", "fit"]


def digits(split: str = "train", per_class: int | None = None, flat: bool = False,
           classes: Sequence[int] = range(10), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each digit in ``classes`` (all when None) from the bundled
    subset, standardised; (N, 1, 28, 28) float32 (or (N, 784) with ``flat``) and int64
    labels. The images of a class are picked by a seeded shuffle, so sizes nest: the 5 per
    class of a seed are among its 20 per class."""
    x, y = mnist_inputs(split, flat=flat)
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        keep.append(rng.permutation(idx)[:per_class] if per_class is not None else idx)
    order = np.sort(np.concatenate(keep))
    return x[order], y[order]


def fit(model: Any, optimizer: Any, x: np.ndarray, y: np.ndarray, epochs: int,
        batch_size: int = 32, seed: int = 0, transform: Callable[..., Any] | None = None,
        val: tuple[np.ndarray, np.ndarray] | None = None, scheduler: Any = None,
        step_losses: list[float] | None = None) -> History:
    """Train ``model`` with cross-entropy through :class:`minidl.train.Trainer` (shuffled
    batches seeded by ``seed``; ``val`` adds ``val_loss`` / ``val_accuracy`` per epoch;
    every batch's loss is appended to ``step_losses`` when a list is given)."""
    callbacks = [] if step_losses is None else [LambdaCallback(
        on_batch_end=lambda trainer, step: step_losses.append(trainer.batch_loss.item()))]
    trainer = Trainer(model, optimizer, "cross_entropy", metrics=["accuracy"], verbose=0,
                      scheduler=scheduler, callbacks=callbacks)
    loader = DataLoader((x, y), batch_size=batch_size, shuffle=True, seed=seed,
                        transform=transform)
    val_loader = DataLoader(val, batch_size=500) if val is not None else None
    return trainer.fit(loader, epochs=epochs, val_loader=val_loader)
