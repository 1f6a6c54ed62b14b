"""Keras's callbacks on minidl's training loop: EarlyStopping, ModelCheckpoint,
LearningRateScheduler, ReduceLROnPlateau, CSVLogger, LambdaCallback, and the Callback base
for user callbacks written as for Keras (``on_epoch_end(self, epoch, logs)``, ``self.model``,
``self.model.stop_training = True``).

The built-in ones are :class:`minidl.train.Callback` objects that ``fit(callbacks=[...])``
hands to the Trainer; a Keras-style :class:`Callback` (and :class:`LambdaCallback`) runs
behind an adapter that calls its Keras-signature hooks. Epochs are counted from 0 in the
hooks, as Keras counts them; ``stop_training`` takes effect at the end of the epoch.
"""
from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..train import callbacks as base
from ..train.callbacks import _Monitor
from ..train.history import History

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
           "ReduceLROnPlateau", "CSVLogger", "LambdaCallback", "History"]


def _lr_groups(trainer: Any) -> list[dict]:
    groups = getattr(trainer.optimizer, "param_groups", None)
    if not groups:
        raise ValueError("callback: the optimizer has no learning rate to change")
    return groups


def _set_lr(trainer: Any, lr: float) -> None:
    opt = trainer.optimizer
    if hasattr(type(opt), "learning_rate"):
        opt.learning_rate = lr
    else:
        for g in _lr_groups(trainer):
            g["lr"] = lr


class Callback:
    """Base class for callbacks written as for Keras: override ``on_train_begin(logs)``,
    ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_train_batch_begin(batch, logs)`` / ``on_train_batch_end(batch, logs)`` (or their
    Keras aliases ``on_batch_begin`` / ``on_batch_end``, which the defaults call, as in
    Keras), ``on_train_end(logs)``; ``self.model`` is the model being trained; set
    ``self.model.stop_training = True`` to stop after the epoch. At a batch's end ``logs``
    holds Keras 3's running figures of the epoch so far: ``'loss'`` (the sample-weighted
    mean of the batch losses) and the compiled metrics. ``fit`` runs it through an adapter,
    since minidl's hooks receive the Trainer first."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...


_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")


def _overrides(cb: Callback, *names: str) -> bool:
    """Whether ``cb`` has its own version of one of the hooks ``names`` (a subclass method
    or, for LambdaCallback, an attribute)."""
    return any(n in vars(cb) or getattr(type(cb), n) is not getattr(Callback, n)
               for n in names)


class _Adapter(base.Callback):
    """Runs a Keras-style :class:`Callback`'s hooks from minidl's (kept apart so that a
    subclass's ``on_epoch_end(epoch, logs)`` does not shadow minidl's signature).

    ``samples`` and ``batch_size`` are fit's: the size of each batch, which weights the
    running loss as Keras's loss tracker does. The running figures are read back from the
    device only for a callback that has batch hooks."""

    def __init__(self, cb: Callback, samples: int = 0, batch_size: int = 1) -> None:
        self.cb, self.samples, self.batch_size = cb, samples, batch_size
        self.hooks_end = _overrides(cb, "on_batch_end", "on_train_batch_end")
        self.hooks_begin = _overrides(cb, "on_batch_begin", "on_train_batch_begin")
        self._total, self._count = 0.0, 0

    def on_train_begin(self, trainer: Any) -> None:
        self.cb.set_model(trainer.model)
        trainer.model.stop_training = False
        self.cb.on_train_begin({})

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        self._total, self._count = 0.0, 0
        self.cb.on_epoch_begin(epoch, {})

    def begin_batch(self, batch: int) -> None:
        self.cb.on_train_batch_begin(batch, {})

    def on_batch_end(self, trainer: Any, step: int) -> None:
        if self.hooks_end:
            n = max(1, min(self.batch_size, self.samples - (step - 1) * self.batch_size))
            self._total += float(trainer.batch_loss.item()) * n
            self._count += n
            logs = {"loss": self._total / self._count}
            logs.update((m.name, m.compute()) for m in trainer.metrics)
            self.cb.on_train_batch_end(step - 1, logs)
        if getattr(trainer.model, "stop_training", False):
            trainer.stop_training = True

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.cb.on_epoch_end(epoch, {k: v for k, v in logs.items()
                                     if k not in History.BOOKKEEPING})
        if getattr(trainer.model, "stop_training", False):
            trainer.stop_training = True

    def on_train_end(self, trainer: Any) -> None:
        self.cb.on_train_end({})

    def state_dict(self) -> dict[str, Any]:
        return {}


class _BatchBegins(base.Callback):
    """Calls the Keras callbacks' ``on_train_batch_begin``: for batch 0 after every
    callback's ``on_epoch_begin``, for batch k + 1 after every callback's end of batch k
    (minidl's loop has no begin-of-batch hook; nothing runs in between but the loading of
    the next batch). Last in fit's list; ``batches`` is the number of batches per epoch."""

    def __init__(self, adapters: list[_Adapter], batches: int) -> None:
        self.adapters, self.batches = adapters, batches

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        for a in self.adapters:
            a.begin_batch(0)

    def on_batch_end(self, trainer: Any, step: int) -> None:
        if step < self.batches:
            for a in self.adapters:
                a.begin_batch(step)

    def state_dict(self) -> dict[str, Any]:
        return {}


def to_minidl(callbacks: Any, samples: int = 0, batch_size: int = 1) -> list[base.Callback]:
    """``fit``'s callbacks as minidl callbacks: Keras-style :class:`Callback` subclasses
    behind an adapter, minidl ones as they are. ``samples`` / ``batch_size``: fit's training
    set and batch size (for the batch hooks' running loss and begin-of-batch calls)."""
    out: list[base.Callback] = []
    begins: list[_Adapter] = []
    for cb in callbacks or []:
        if isinstance(cb, Callback):
            out.append(_Adapter(cb, samples, batch_size))
            if out[-1].hooks_begin:
                begins.append(out[-1])
        elif isinstance(cb, base.Callback):
            out.append(cb)
        else:
            raise TypeError(f"fit: callbacks must be keras.callbacks or minidl.train "
                            f"callbacks, got {type(cb).__name__}")
    if begins:
        out.append(_BatchBegins(begins, -(-samples // max(batch_size, 1))))
    return out


class LambdaCallback(Callback):
    """Keras's LambdaCallback: ``on_epoch_end=lambda epoch, logs: ...`` and the other hooks
    (``on_epoch_begin``, ``on_train_begin``, ``on_train_end``, ``on_train_batch_begin``,
    ``on_train_batch_end`` and Keras's aliases ``on_batch_begin`` / ``on_batch_end``) with
    Keras's signatures (minidl.train.LambdaCallback's take the Trainer first)."""

    def __init__(self, on_epoch_begin: Callable | None = None,
                 on_epoch_end: Callable | None = None, on_train_begin: Callable | None = None,
                 on_train_end: Callable | None = None,
                 on_train_batch_begin: Callable | None = None,
                 on_train_batch_end: Callable | None = None, **kwargs: Any) -> None:
        bad = sorted(set(kwargs) - {"on_batch_begin", "on_batch_end"})
        if bad:
            raise TypeError(f"LambdaCallback: unexpected argument(s) {bad}; minidl's fit calls "
                            f"on_train_begin/end, on_epoch_begin/end, on_train_batch_begin/end "
                            f"and on_batch_begin/end")
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end),
                         ("on_train_batch_begin", on_train_batch_begin),
                         ("on_train_batch_end", on_train_batch_end), *kwargs.items()):
            if fn is not None:
                setattr(self, name, fn)


class EarlyStopping(base.EarlyStopping):
    """Keras's EarlyStopping with Keras's defaults and rule: ``monitor='val_loss'``,
    ``min_delta=0``, ``patience=0``, ``mode='auto'``, ``baseline=None``,
    ``restore_best_weights=False``, ``start_from_epoch=0``. Stops once ``patience`` epochs
    in a row have not improved the best value by more than ``min_delta`` (an improvement
    that misses ``baseline`` does not reset the count); with ``restore_best_weights`` the
    weights of the best epoch are put back when training ends."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__(monitor=monitor, patience=patience, min_delta=min_delta, mode=mode,
                         restore_best=restore_best_weights, verbose=verbose)
        self.baseline, self.start_from_epoch = baseline, start_from_epoch

    @property
    def restore_best_weights(self) -> bool:
        return self.restore_best

    def on_train_begin(self, trainer: Any) -> None:
        # Keras re-arms the callback for every fit
        super().on_train_begin(trainer)
        self.wait, self._monitor.best, self._best_weights, self.best_epoch = 0, None, None, None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        value = self._monitor.value(logs)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best and self._best_weights is None:
            self._snapshot(trainer)
            self.best_epoch = epoch + 1
        self.wait += 1
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch = value, epoch + 1
            if self.restore_best:
                self._snapshot(trainer)
            if self.baseline is None or _beats(self._monitor, value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            trainer.stop_training = True
            self.stopped_epoch = epoch + 1
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping")

    def _snapshot(self, trainer: Any) -> None:
        self._best_weights = {k: v.data.copy()
                              for k, v in trainer.model.state_dict().items()}


def _beats(monitor: Any, value: float, reference: float) -> bool:
    if monitor.mode == "min":
        return value < reference - monitor.min_delta
    return value > reference + monitor.min_delta


class ModelCheckpoint(base.Callback):
    """Keras's ModelCheckpoint: after every epoch, ``model.save_weights(filepath)`` (the
    path may hold ``{epoch}`` (from 1) and log keys, ``'ckpt-{epoch:02d}-{val_loss:.2f}'``);
    with ``save_best_only`` only when ``monitor`` improved. minidl cannot serialise a
    model's architecture, so ``save_weights_only=False`` saves the weights too: rebuild the
    model with the same code and ``load_weights(filepath)``. Writes are atomic; weights that
    are not finite are never saved."""

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint: only save_freq='epoch' is supported by minidl")
        self.filepath = str(filepath)
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.verbose = verbose
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self._monitor.best = initial_value_threshold

    @property
    def best(self) -> float | None:
        return self._monitor.best

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.save_best_only:
            value = self._monitor.value(logs)
            if not self._monitor.improved(value):
                return
            self._monitor.best = value
        if not trainer.weights_finite():
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} has non-finite weights; not "
                          f"saved", stacklevel=2)
            return
        path = self.filepath.format(epoch=epoch + 1, **logs)
        trainer.model.save_weights(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.best = state.get("best")


class LearningRateScheduler(base.Callback):
    """Keras's LearningRateScheduler: at the start of each epoch (from 0) the learning rate
    becomes ``schedule(epoch, lr)`` (or ``schedule(epoch)`` for a one-argument function)."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        lr = float(_lr_groups(trainer)[0]["lr"])
        try:
            new = self.schedule(epoch, lr)
        except TypeError:
            new = self.schedule(epoch)
        _set_lr(trainer, float(new))
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.")


class ReduceLROnPlateau(base.Callback):
    """Keras's ReduceLROnPlateau: multiply the learning rate by ``factor`` (0.1) when
    ``monitor`` ('val_loss') has not improved by ``min_delta`` (1e-4) for ``patience`` (10)
    epochs, then wait ``cooldown`` epochs; never below ``min_lr``."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        self._monitor = _Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr
        self.wait = self.cooldown_counter = 0

    def on_train_begin(self, trainer: Any) -> None:
        self.wait = self.cooldown_counter = 0
        self._monitor.best = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        value = self._monitor.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(value):
            self._monitor.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(_lr_groups(trainer)[0]["lr"])
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    _set_lr(trainer, new)
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best, "wait": self.wait, "cooldown": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.best = state.get("best")
        self.wait, self.cooldown_counter = int(state.get("wait", 0)), int(state.get("cooldown", 0))


class CSVLogger(base.Callback):
    """Keras's CSVLogger: one row per epoch, ``epoch`` counted from 0 then the losses and
    metrics in sorted order, separated by ``separator``; ``append=True`` adds to an
    existing file."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",",
                 append: bool = False) -> None:
        self.path, self.sep, self.append = Path(filename), separator, append
        self._keys: list[str] | None = None

    def on_train_begin(self, trainer: Any) -> None:
        self._keys = None
        if not (self.append and self.path.exists()):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
        elif self.path.stat().st_size > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f, delimiter=self.sep), None)
            self._keys = header[1:] if header else None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        figures = {k: v for k, v in logs.items() if k not in History.BOOKKEEPING}
        new = self._keys is None
        if new:
            self._keys = sorted(figures)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=self.sep)
            if new:
                writer.writerow(["epoch", *self._keys])
            writer.writerow([epoch, *(figures.get(k, "NA") for k in self._keys)])
