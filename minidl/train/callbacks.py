"""Callbacks the Trainer calls: ModelCheckpoint, EarlyStopping, LRSchedulerStep, CSVLogger,
TensorBoard, LambdaCallback and the Callback base."""
from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau
from .checkpoint import state_arrays

__all__ = ["Callback", "LambdaCallback", "ModelCheckpoint", "EarlyStopping", "LRSchedulerStep",
           "CSVLogger", "TensorBoard"]


class Callback:
    """Hooks the Trainer calls; override the ones you need.

    ``logs`` in ``on_epoch_end`` holds the epoch's figures (``loss``, metrics, ``val_*``,
    ``lr``, ``time``) as Python floats. Set ``trainer.stop_training = True`` to stop after
    the current epoch. Callbacks with state that a resumed run needs define
    ``state_dict()`` / ``load_state_dict()``; the Trainer stores it in its checkpoints.
    ``trainer`` is the :class:`minidl.train.Trainer` running the loop (typed ``Any`` because
    trainer.py imports this file).
    """

    def on_train_begin(self, trainer: Any) -> None: ...
    def on_epoch_begin(self, trainer: Any, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Any, step: int) -> None: ...
    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda t, e, logs:
    print(e, logs['loss']))``."""

    def __init__(self, **hooks: Callable[..., None]) -> None:
        names = {"on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end",
                 "on_train_end"}
        bad = set(hooks) - names
        if bad:
            raise TypeError(f"LambdaCallback: unknown hooks {sorted(bad)}; expected one of "
                            f"{sorted(names)}")
        for name, fn in hooks.items():
            setattr(self, name, fn)


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    lowered = monitor.lower()
    return "min" if any(s in lowered for s in ("loss", "error", "mae", "mse")) else "max"


class _Monitor:
    """Tracks the best value of one logged quantity ('min' or 'max' mode)."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        self.owner, self.monitor, self.mode = owner, monitor, _mode_for(monitor, mode)
        self.min_delta = abs(min_delta)
        self.best: float | None = None
        self._warned = False

    def value(self, logs: dict[str, float]) -> float | None:
        key = self.monitor
        if key not in logs and key.startswith("val_") and key[4:] in logs:
            # No validation set: judge by the training figure, and say so once.
            if not self._warned:
                warnings.warn(f"{self.owner}: {key!r} is not logged (no val_loader?); "
                              f"monitoring {key[4:]!r} instead", stacklevel=3)
                self._warned = True
            key = key[4:]
        if key not in logs:
            raise KeyError(f"{self.owner}: monitored quantity {self.monitor!r} is not in the "
                           f"logs; available: {sorted(logs)}")
        return logs[key]

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class ModelCheckpoint(Callback):
    """Save the full training state at the end of epochs, atomically.

    ``path`` receives the best epoch so far by ``monitor`` (``save_best_only=True``) or every
    epoch (``save_best_only=False``); it may contain ``{epoch}`` (e.g.
    ``'ckpt-{epoch:03d}.npz'``). With ``save_last`` (default), ``<stem>.last<suffix>``
    (or the path given) is rewritten every epoch too: that is the file to resume from, since
    it holds the latest state. Every file is a complete checkpoint (model, optimiser,
    scheduler, epoch, RNG and data-loader state, history, callback state), written through
    :func:`minidl.io.save` (temporary file, then rename), so an interrupted save never
    destroys the previous checkpoint. Weights that are not finite are never saved.
    ``save_every_steps=N`` also rewrites the last file every N optimisation steps, mid-epoch
    (resumable exactly, like the file a SIGINT writes), for epochs too long to lose.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss",
                 save_best_only: bool = True, mode: str = "auto",
                 save_last: bool | str | os.PathLike = True, verbose: int = 0,
                 save_every_steps: int | None = None) -> None:
        if save_every_steps is not None and (not isinstance(save_every_steps, int)
                                             or save_every_steps < 1):
            raise ValueError(f"ModelCheckpoint: save_every_steps must be a positive int or "
                             f"None, got {save_every_steps!r}")
        if save_every_steps is not None and save_last is False:
            raise ValueError("ModelCheckpoint: save_every_steps rewrites the save_last file; "
                             "it needs save_last=True (or a path)")
        self.save_every_steps = save_every_steps
        self.path = str(path)
        self.save_best_only = save_best_only
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        if save_last is True:
            p = Path(self.path)
            # A templated path ('ckpt-{epoch:03d}.npz') gets a plain 'last.npz' beside it.
            stem = "last" if "{" in p.name else f"{p.stem}.last"
            self.last_path: str | None = str(p.with_name(f"{stem}{p.suffix or '.npz'}"))
        elif save_last:
            self.last_path = str(save_last)
        else:
            self.last_path = None
        self.verbose = verbose
        self.best_path: str | None = None     # the file holding the best epoch
        self.last_saved: tuple[str, int] | None = None  # (path, epoch) of the latest save

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    @property
    def best(self) -> float | None:
        return self._monitor.best

    def on_batch_end(self, trainer: Any, step: int) -> None:
        # Mid-epoch state (with the epoch's position and sums): a run killed outright then
        # replays at most save_every_steps steps instead of the whole epoch.
        every = self.save_every_steps
        if every and trainer.global_step % every == 0 and self.last_path is not None:
            if not trainer.weights_finite():  # never replace a good file with a broken state
                return
            trainer.save_checkpoint(self.last_path)
            self.last_saved = (self.last_path, trainer.epoch + 1)  # saved within this epoch

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if not trainer.weights_finite():
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} has non-finite weights; not "
                          f"saved (the previous checkpoint is kept)", stacklevel=2)
            return
        value = self._monitor.value(logs)
        improved = self._monitor.improved(value)
        if improved:
            self._monitor.best = value
        if improved or not self.save_best_only:
            path = self.path.format(epoch=epoch + 1, **logs) if "{" in self.path else self.path
            trainer.save_checkpoint(path)
            if improved:
                self.best_path = path
            self.last_saved = (path, epoch + 1)
            if self.verbose:
                print(f"ModelCheckpoint: saved epoch {epoch + 1} to {path} "
                      f"({self.monitor}={value:.4g})")
        if self.last_path is not None:
            trainer.save_checkpoint(self.last_path)
            self.last_saved = (self.last_path, epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best, "best_path": self.best_path}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.best = state.get("best")
        self.best_path = state.get("best_path")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs. With ``restore_best=True`` the model gets the weights of its best epoch back
    when training stops (early or not). ``restore_best_weights`` is Keras's name for it
    (``keras.callbacks.EarlyStopping`` has Keras's defaults: patience 0, no restoring)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True, verbose: int = 0,
                 restore_best_weights: bool | None = None) -> None:
        if restore_best_weights is not None:
            restore_best = bool(restore_best_weights)
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience, self.restore_best, self.verbose = patience, restore_best, verbose
        self.wait = 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._best_weights: dict[str, Any] | None = None

    @property
    def best(self) -> float | None:
        return self._monitor.best

    def on_train_begin(self, trainer: Any) -> None:
        self.stopped_epoch = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                state = trainer.model.state_dict()
                self._best_weights = {k: v.copy() for k, v in state_arrays(state)}
            return
        self.wait += 1
        if self.wait >= self.patience:  # Keras' rule: patience epochs without improvement
            trainer.stop_training = True
            self.stopped_epoch = epoch + 1
            if self.verbose:
                print(f"EarlyStopping: no improvement of {self._monitor.monitor} for "
                      f"{self.wait} epochs; stopping after epoch {epoch + 1} (best: epoch "
                      f"{self.best_epoch}, {self._monitor.monitor}={self.best:.4g})")

    def on_train_end(self, trainer: Any) -> None:
        if self.restore_best and self._best_weights is not None:
            trainer.model.load_state_dict(self._best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "best_weights": self._best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.best_epoch = state.get("best_epoch")
        self._best_weights = state.get("best_weights")


def _scheduler_interval(scheduler: Any, interval: str) -> str:
    if interval not in ("auto", "epoch", "step"):
        raise ValueError(f"scheduler interval must be 'auto', 'epoch' or 'step', got {interval!r}")
    if interval != "auto":
        return interval
    declared = getattr(scheduler, "interval", None)
    if declared in ("epoch", "step"):
        return declared
    # OneCycle is defined over optimisation steps; the other classic schedules over epochs.
    return "step" if isinstance(scheduler, OneCycleLR) else "epoch"


class LRSchedulerStep(Callback):
    """Call ``scheduler.step()`` after every epoch or, with ``interval='step'``, every batch
    ('auto': per step for OneCycleLR, per epoch otherwise; subclasses count as their base
    class). ReduceLROnPlateau is stepped with the epoch's ``val_loss`` (``loss`` without
    validation). ``Trainer(scheduler=...)`` adds this callback for you."""

    def __init__(self, scheduler: Any, interval: str = "auto") -> None:
        self.scheduler = scheduler
        self.interval = _scheduler_interval(scheduler, interval)

    def on_batch_end(self, trainer: Any, step: int) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.interval != "epoch":
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            # Plateau schedules need the figure they watch: validation loss when there is one.
            self.scheduler.step(logs.get("val_loss", logs["loss"]))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` and every log figure) to a CSV file.

    A fresh run overwrites the file (when its first epoch ends); a resumed run
    (trainer.epoch > 0 at start) appends.
    Each row is flushed, so the file can be plotted while training runs.
    """

    def __init__(self, path: str | os.PathLike, append: bool | None = None) -> None:
        self.path, self.append = Path(path), append
        self._fields: list[str] | None = None

    def on_train_begin(self, trainer: Any) -> None:
        append = self.append if self.append is not None else trainer.epoch > 0
        self._fields = None
        if append and self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            self._fields = rows[0] if rows else None
            # A run killed after writing an epoch's row but before its checkpoint replays
            # that epoch: drop the rows past the checkpoint so that none appears twice.
            kept = [r for r in rows[1:] if not r or _epoch_of(r) <= trainer.epoch]
            if trainer.epoch > 0 and len(kept) < len(rows) - 1:
                with open(self.path, "w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerows(rows[:1] + kept)
        # A fresh run starts the file with its first row, so a run that fails before
        # finishing an epoch leaves no empty file behind (nor truncates an older one).

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        row = {"epoch": epoch + 1, **logs}
        new = self._fields is None
        if new:
            self._fields = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w" if new else "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


class TensorBoard(Callback):
    """Log a training run to TensorBoard event files in ``log_dir`` (needs tensorboardX).

    - every ``update_freq`` optimisation steps: ``step/loss`` (the batch's loss) and
      ``step/lr`` (the first parameter group's; ``step/lr_group<i>`` for the others);
    - every epoch: ``epoch/<name>`` for each figure the epoch logs (``loss``, metrics,
      ``val_*``, ``lr``), equal to what :class:`~minidl.train.History` records;
    - every ``histogram_freq`` steps (0: never): ``weights/<parameter>`` and
      ``gradients/<parameter>`` histograms.

    The x axis is the optimisation step for step and histogram tags and the epoch (1-based)
    for epoch tags. Reading a loss back is a device sync on the GPU: there, a larger
    ``update_freq`` keeps the steps asynchronous. View with ``tensorboard --logdir DIR``.
    """

    def __init__(self, log_dir: str | os.PathLike, update_freq: int = 1,
                 histogram_freq: int = 0) -> None:
        for name, value in (("update_freq", update_freq), ("histogram_freq", histogram_freq)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TensorBoard: {name} must be a step count >= 0, got {value!r}")
        self.log_dir = Path(log_dir)
        self.update_freq, self.histogram_freq = update_freq, histogram_freq
        self.writer: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        from .tensorboard import summary_writer  # noqa: PLC0415 - tensorboardX only when used

        if self.writer is None:
            self.writer = summary_writer(self.log_dir)

    def on_batch_end(self, trainer: Any, step: int) -> None:
        gs = trainer.global_step
        if self.update_freq and gs % self.update_freq == 0:
            self.writer.add_scalar("step/loss", float(trainer.batch_loss.item()), gs)
            for i, group in enumerate(trainer.optimizer.param_groups):
                self.writer.add_scalar("step/lr" + (f"_group{i}" if i else ""),
                                       float(group["lr"]), gs)
        if self.histogram_freq and gs % self.histogram_freq == 0:
            for name, p in trainer.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.numpy(), gs)
                if p.grad is not None:
                    self.writer.add_histogram(f"gradients/{name}", p.grad.numpy(), gs)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        for name, value in logs.items():
            if name != "time":
                self.writer.add_scalar(f"epoch/{name}", float(value), epoch + 1)
        self.writer.flush()

    def on_train_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _epoch_of(row: list[str]) -> float:
    """The epoch number in the first column of a CSVLogger row (inf when unreadable)."""
    try:
        return float(row[0])
    except (ValueError, IndexError):
        return float("inf")
