"""The state of an epoch in progress: running loss, metric sums and position, resumable.

A run stopped mid-epoch (SIGINT, SIGTERM) saves an :class:`EpochProgress` in its checkpoint;
the resumed run continues the same epoch from the next batch with the same sums, so its
epoch figures are the ones the uninterrupted run computes.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import get_array_module, to_device, to_numpy
from .metrics import Metric

__all__ = ["RunningLoss", "EpochProgress"]


class RunningLoss:
    """The sample-weighted sum of an epoch's batch losses. Each batch's 0-d loss (and a
    flag: were its inputs finite) stays on the device until :meth:`sync` reads all pending
    ones back in one transfer. The sum is added batch by batch in order, so it does not
    depend on when the syncs happen (every step, every 50, or at an interruption)."""

    def __init__(self) -> None:
        # (device 0-d loss, batch size, device 0-d bool "inputs finite" or None) not yet read
        self.pending: list[tuple[Any, int, Any]] = []
        self.total, self.count = 0.0, 0

    def add(self, loss: Any, n: int, inputs_finite: Any = None) -> None:
        self.pending.append((loss, n, inputs_finite))

    def sync(self, step: int) -> tuple[int, float, bool] | None:
        """Add the pending losses (the last of them from ``step``) to the sum; returns
        (step, value, inputs finite) of the first one that is NaN or infinite instead."""
        if not self.pending:
            return None
        xp = get_array_module(self.pending[0][0])
        values = to_numpy(xp.stack([p[0].reshape(()) for p in self.pending])).astype(np.float64)
        first_step = step - len(self.pending) + 1
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            flag = self.pending[int(bad[0])][2]
            self.pending.clear()
            finite = True if flag is None else bool(to_numpy(flag))
            return first_step + int(bad[0]), float(values[bad[0]]), finite
        for value, (_, n, _) in zip(values.tolist(), self.pending):
            self.total += value * n
            self.count += n
        self.pending.clear()
        return None

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


def metric_state(metric: Metric) -> dict[str, Any]:
    """A metric's running sums on the host (its own ``state_dict`` when it has one)."""
    own = getattr(metric, "state_dict", None)
    if callable(own):
        return own()
    total = metric.total
    return {"total": total if isinstance(total, (int, float)) else to_numpy(total),
            "count": int(metric.count)}


def load_metric_state(metric: Metric, state: dict[str, Any], device: str) -> None:
    """Undo :func:`metric_state`: the sums go back to ``device`` with their dtype."""
    own = getattr(metric, "load_state_dict", None)
    if callable(own):
        own(state)
        return
    total = state["total"]
    metric.total = total if isinstance(total, (int, float)) else to_device(
        np.asarray(total), device)
    metric.count = int(state["count"])


class EpochProgress:
    """Where a training epoch stands: ``epoch`` (from 0), ``step`` (batches done), the
    running loss and metric sums, the learning rate it started with and the time spent.

    ``finished`` is set once the training batches are done (validation may still run);
    ``rng`` and ``loader`` then hold the generator and loader states of that moment, which
    a checkpoint written during validation stores instead of the current ones.
    """

    def __init__(self, epoch: int, lr: float | None) -> None:
        self.epoch, self.lr, self.step = epoch, lr, 0
        self.running = RunningLoss()
        self.elapsed = 0.0
        self._start = time.perf_counter()
        self.finished = False
        self.rng: Any = None
        self.loader: Any = None
        self.saved_metrics: list[dict[str, Any]] = []   # metric sums to restore on resume
        self.final_metrics: list[Metric] = []   # the metrics as the batches left them

    def finish(self, rng: Any, loader: Any, metrics: Sequence[Metric]) -> None:
        """The training batches are done; keep the generator, loader and metric states of
        now (validation resets and reuses the metrics)."""
        self.finished, self.rng, self.loader = True, rng, loader
        # Shallow copies: no host read now; updates and reset() rebind the sums, so the
        # copies keep this epoch's (a metric that mutates its state in place should deep-copy
        # in its own state_dict).
        self.final_metrics = [copy.copy(m) for m in metrics]

    def seconds(self) -> float:
        """Time spent in this epoch, across interruptions."""
        return self.elapsed + time.perf_counter() - self._start

    def state_dict(self, metrics: Sequence[Metric]) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "lr": self.lr,
                "loss_total": self.running.total, "loss_count": self.running.count,
                "metrics": [metric_state(m) for m in (self.final_metrics if self.finished
                                                      else metrics)],
                "elapsed": self.seconds(),
                "finished": self.finished}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpochProgress:
        """The progress saved by :meth:`state_dict` (metric sums load in :meth:`restore`)."""
        progress = cls(int(state["epoch"]), state.get("lr"))
        progress.step = int(state["step"])
        progress.running.total = float(state["loss_total"])
        progress.running.count = int(state["loss_count"])
        progress.elapsed = float(state.get("elapsed", 0.0))
        progress.saved_metrics = list(state.get("metrics", []))
        # stopped during validation: the training batches are done, the loader has moved on
        progress.finished = bool(state.get("finished", False))
        return progress

    def restore(self, metrics: Sequence[Metric], device: str) -> None:
        """Give ``metrics`` the sums saved with this progress."""
        if len(self.saved_metrics) != len(metrics):
            raise ValueError(f"Trainer: the checkpoint was stopped mid-epoch with "
                             f"{len(self.saved_metrics)} metrics, this trainer has "
                             f"{len(metrics)}; resume with the same metrics")
        for m, s in zip(metrics, self.saved_metrics):
            load_metric_state(m, s, device)
