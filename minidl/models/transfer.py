"""The lectures' transfer-learning experiment, offline, on the bundled MNIST subset.

Pretrain LeNet-5 on digits 0-4, then learn digits 5-9 from a few labelled examples per
class three ways: (1) frozen features + a new head (a linear classifier on the CNN codes),
(2) fine-tuning everything with a small learning rate for the pretrained body, (3) the same
network trained from scratch. :func:`lenet_transfer_experiment` returns the accuracies and
the training times; ``docs/transfer.md`` shows a full run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import manual_seed
from ..data import DataLoader, mnist_subset, standardize_mnist
from ..optim import Adam
from ..train import Trainer, model_accuracy
from . import extract_features, freeze, param_groups, replace_head
from .lenet import LeNet5, lenet5

__all__ = ["TransferResult", "lenet_transfer_experiment"]


@dataclass
class TransferResult:
    """One row of the experiment: test accuracy on digits 5-9 and training time."""

    method: str
    accuracy: float
    seconds: float
    trainable_params: int


def _fit(model: Any, optimizer: Any, x: np.ndarray, y: np.ndarray, epochs: int,
         batch_size: int, seed: int) -> float:
    """Train with cross-entropy on shuffled batches (the Trainer's loop); returns the wall
    time in seconds."""
    t0 = time.perf_counter()
    loader = DataLoader((x, y), batch_size=batch_size, shuffle=True, seed=seed)
    Trainer(model, optimizer, "cross_entropy", metrics=[], verbose=0).fit(loader, epochs)
    return time.perf_counter() - t0


def lenet_transfer_experiment(shots: int = 50, pretrain_epochs: int = 4,
                              finetune_epochs: int = 30, pretrain_per_class: int | None = None,
                              lr: float = 1e-3, head_lr: float = 1e-2, body_lr: float = 1e-3,
                              probe_epochs: int = 100, seed: int = 0,
                              verbose: bool = False) -> dict[str, Any]:
    """Run the experiment; returns ``{'pretrain': {...}, 'results': [TransferResult, ...]}``.

    Source task: digits 0-4 of ``mnist_subset('train')`` (400 per class, or
    ``pretrain_per_class``), trained ``pretrain_epochs`` with Adam(lr). Target task: digits
    5-9 from ``shots`` labelled training images per class, tested on all test images of
    5-9 (100 per class), batch 25. ``frozen features + new head``: the CNN codes are
    computed once and a new 84 -> 5 head is trained on them (Adam(head_lr),
    ``probe_epochs``); ``fine-tune``: all layers for ``finetune_epochs``, the new head at
    ``head_lr`` and the pretrained body at the smaller ``body_lr`` through parameter groups;
    ``from scratch``: a fresh LeNet-5, Adam(lr), ``finetune_epochs``. Times are the
    wall-clock seconds of each training.
    """
    src, tgt, test, src_test = _digit_tasks(np.random.default_rng(seed), shots,
                                            pretrain_per_class)
    manual_seed(seed)
    base = lenet5(num_classes=5)
    secs = _fit(base, Adam(base.parameters(), lr=lr), *src, pretrain_epochs, 32, seed)
    pre = {"accuracy_0_4": model_accuracy(base, *src_test), "seconds": secs, "images": len(src[0])}
    if verbose:
        print(f"pretrained on {len(src[0])} images of 0-4: test accuracy "
              f"{pre['accuracy_0_4']:.3f} ({secs:.1f} s)")
    pretrained = {k: v.numpy().copy() for k, v in base.state_dict().items()}

    def from_pretrained() -> LeNet5:
        m = lenet5(num_classes=5)
        m.load_state_dict(pretrained)
        replace_head(m, 5)  # a new, randomly initialised head for the new classes
        return m

    manual_seed(seed + 1)
    results = [_frozen_features(from_pretrained(), tgt, test, head_lr, probe_epochs, seed + 1)]
    # fine-tune everything, the pretrained body with a smaller learning rate
    manual_seed(seed + 1)
    m = from_pretrained()
    opt = Adam(param_groups(m, lr=head_lr, body_lr=body_lr), lr=head_lr)
    secs = _fit(m, opt, *tgt, finetune_epochs, 25, seed + 2)
    results.append(_result(f"fine-tune (body lr {body_lr:g}, head lr {head_lr:g})", m, test,
                           secs))
    # from scratch on the few examples
    manual_seed(seed + 1)
    m = lenet5(num_classes=5)
    secs = _fit(m, Adam(m.parameters(), lr=lr), *tgt, finetune_epochs, 25, seed + 3)
    results.append(_result("from scratch", m, test, secs))
    if verbose:
        for r in results:
            print(f"{r.method:45s} accuracy {r.accuracy:.3f}  ({r.seconds:.1f} s, "
                  f"{r.trainable_params:,} trainable)")
    return {"pretrain": pre, "results": results, "shots": shots,
            "target_train": len(tgt[0]), "target_test": len(test[0])}


Task = tuple[np.ndarray, np.ndarray]


def _digit_tasks(rng: np.random.Generator, shots: int, pretrain_per_class: int | None
                 ) -> tuple[Task, Task, Task, Task]:
    """Source train (0-4), target train (5-9, ``shots`` per class), target test, source test;
    labels renumbered from 0, images standardised, each set shuffled by ``rng``."""
    xtr, ytr = mnist_subset("train")
    xte, yte = mnist_subset("test")
    xtr, xte = standardize_mnist(xtr), standardize_mnist(xte)

    def take(x: np.ndarray, y: np.ndarray, digits: range, per_class: int | None) -> Task:
        idx = np.concatenate([np.flatnonzero(y == d)[:per_class] for d in digits])
        idx = rng.permutation(idx)
        return x[idx], (y[idx] - digits.start).astype(np.int64)

    return (take(xtr, ytr, range(0, 5), pretrain_per_class), take(xtr, ytr, range(5, 10), shots),
            take(xte, yte, range(5, 10), None), take(xte, yte, range(0, 5), None))


def _frozen_features(m: LeNet5, tgt: Task, test: Task, head_lr: float, epochs: int,
                     seed: int) -> TransferResult:
    """Frozen body + new head: the CNN codes are computed once, then only the 84 -> 5 head
    trains on them (a frozen body needs no forward pass per epoch)."""
    freeze(m, depth=-1)
    t0 = time.perf_counter()
    codes = extract_features(m, tgt[0]).numpy()
    head = m.classifier
    _fit(head, Adam(head.parameters(), lr=head_lr), codes, tgt[1], epochs, 25, seed)
    return _result("frozen features + new head", m, test, time.perf_counter() - t0)


def _result(method: str, m: LeNet5, test: Task, seconds: float) -> TransferResult:
    return TransferResult(method, model_accuracy(m, *test), seconds,
                          m.num_parameters(trainable_only=True))
