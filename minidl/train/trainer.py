"""Training loop: ``Trainer`` with fit / evaluate / predict, metrics, callbacks, checkpoints.

    >>> import minidl as md
    >>> from minidl import nn, optim
    >>> from minidl.data import DataLoader, blobs
    >>> from minidl.train import Trainer
    >>> md.manual_seed(0)
    >>> x, y = blobs(200)
    >>> model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), "cross_entropy",
    ...                   metrics=["accuracy"], verbose=0)
    >>> history = trainer.fit(DataLoader((x, y), batch_size=32, shuffle=True, seed=0), epochs=3)
    >>> sorted(history)
    ['accuracy', 'epoch', 'loss', 'lr', 'time']
    >>> trainer.evaluate(DataLoader((x, y), batch_size=100))["accuracy"] > 0.9
    True

The loop itself is short. One optimisation step is :func:`train_step`; one pass over a
loader is :meth:`Trainer.run_epoch`; :meth:`Trainer.fit` adds the epoch loop, validation,
history, the LR schedule and callbacks. Other front ends (the functional API's ``Model.fit``,
the ``minidl`` command) build a Trainer rather than a loop of their own.

Host syncs: on the GPU, reading a number (``loss.item()``) waits for every queued kernel.
The Trainer keeps running sums of the loss and of every metric on the device and reads
them back once every ``sync_every`` steps (every step on the CPU, where reading is free),
at the end of an epoch, and for the progress bar.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import Tensor, no_grad, tensor
from ..backend import (
    device_of,
    get_array_module,
    get_default_device,
    get_rng_state,
    set_rng_state,
    to_device,
    to_numpy,
)

__all__ = [
    "Trainer", "train_step", "NonFiniteLossError", "History",
    "Metric", "FunctionMetric", "Accuracy", "TopKAccuracy", "MeanAbsoluteError", "MeanSquaredError",
    "get_metric", "get_loss", "accuracy", "top_k_accuracy", "confusion_matrix",
    "most_confused", "Callback", "ModelCheckpoint", "EarlyStopping", "LRSchedulerStep",
    "CSVLogger", "LambdaCallback", "save_checkpoint", "load_checkpoint",
]


# ============================================================================================
# Metrics
# ============================================================================================

def _first(x: Any) -> Any:
    """The first element of a tuple/list of outputs (multi-output models), else ``x``."""
    return x[0] if isinstance(x, (tuple, list)) else x


def _array(x: Any) -> Any:
    """The backend array of a Tensor (or the array itself)."""
    x = _first(x)
    return x.data if isinstance(x, Tensor) else x


class Metric:
    """A quantity averaged over an epoch: ``reset()``, ``update(output, target)``, ``compute()``.

    ``update`` receives the model output and the target as the Trainer has them (Tensors,
    or tuples of Tensors for several outputs/targets); :meth:`select` turns them into the
    backend arrays (NumPy or CuPy) of output number ``output`` (default: the first). It must
    not read values back to the host: keep running sums as device arrays and let
    ``compute()`` (called once per epoch or log interval) do the one transfer. ``name`` is
    the key in logs and history (validation adds a ``val_`` prefix).
    """

    name = "metric"

    def __init__(self, *, name: str | None = None, output: int | None = None) -> None:
        if name is not None:
            self.name = name
        self.output = output
        self.reset()

    def select(self, output: Any, target: Any) -> tuple[Any, Any]:
        """The backend arrays of the output and target this metric watches."""
        if self.output is not None:
            if not isinstance(output, (tuple, list)) or self.output >= len(output):
                raise ValueError(f"{self.name}: output={self.output} asked for, but the model "
                                 f"gave {len(output) if isinstance(output, (tuple, list)) else 1}"
                                 f" output(s)")
            output = output[self.output]
            if isinstance(target, (tuple, list)):
                target = target[self.output]
        return _array(output), _array(target)

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.total: Any = 0.0
        self.count = 0

    def update(self, output: Any, target: Any) -> None:
        """Add one batch: ``output`` (N, ...) and ``target`` (N, ...)."""
        raise NotImplementedError

    def compute(self) -> float:
        """The average over everything seen since ``reset()`` (NaN when nothing was seen)."""
        if self.count == 0:
            return float("nan")
        return float(to_numpy(self.total)) / self.count

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FunctionMetric(Metric):
    """A metric from a function ``fn(output, target) -> number`` (a batch mean), averaged
    over samples. ``fn`` gets Tensors; returning a 0-d Tensor or array keeps the sum on the
    device, returning a Python float costs a host sync per batch.
    """

    def __init__(self, fn: Callable[[Any, Any], Any], name: str | None = None,
                 output: int | None = None) -> None:
        self.fn = fn
        super().__init__(name=name or getattr(fn, "__name__", "metric"), output=output)

    def update(self, output: Any, target: Any) -> None:
        if self.output is not None:
            output, target = output[self.output], (target[self.output] if isinstance(
                target, (tuple, list)) else target)
        value = self.fn(_first(output), _first(target))
        value = value.data if isinstance(value, Tensor) else value
        n = _batch_size(_first(target), (_first(output),))
        self.total = self.total + value * n
        self.count += n


class Accuracy(Metric):
    """Fraction of correctly classified samples.

    Outputs (N, C) with C >= 2 are scores (logits or probabilities): the prediction is the
    argmax. Outputs (N,) or (N, 1) are binary: the prediction is ``output > threshold``
    (default 0.5, for probabilities; use 0.0 for logits). Targets are class indices (N,) or
    one-hot / probability rows (N, C), whose argmax is the class.
    """

    name = "accuracy"

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        self.threshold = threshold
        super().__init__(**kwargs)

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        if output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1):
            pred = (output.reshape(-1) > self.threshold).astype(np.int64)
            target = target.reshape(-1)
        else:
            pred = output.argmax(axis=1)
            if target.ndim == output.ndim and target.shape == output.shape:
                target = target.argmax(axis=1)  # one-hot / soft targets
        if pred.shape != target.shape:
            raise ValueError(f"accuracy: predictions have shape {tuple(pred.shape)} (from "
                             f"output {tuple(output.shape)}) but target has shape "
                             f"{tuple(target.shape)}")
        self.total = self.total + xp.count_nonzero(pred == target.astype(pred.dtype))
        self.count += int(pred.size)


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the ``k`` highest scores of (N, C) outputs.

    With fewer than ``k`` classes every sample counts as correct (as in torch/keras).
    """

    def __init__(self, k: int = 5, **kwargs: Any) -> None:
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k = int(k)
        self.name = f"top{k}"
        super().__init__(**kwargs)

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        if output.ndim != 2:
            raise ValueError(f"{self.name}: output must be (N, C) scores, got shape "
                             f"{tuple(output.shape)}")
        if target.ndim == 2:
            target = target.argmax(axis=1)
        n, c = output.shape
        if target.shape != (n,):
            raise ValueError(f"{self.name}: target must be (N,) = ({n},) class indices, got "
                             f"shape {tuple(target.shape)}")
        if self.k >= c:
            hits: Any = n
        else:
            # The true class is in the top k iff fewer than k scores beat it.
            true_score = xp.take_along_axis(output, target.astype(np.int64)[:, None], axis=1)
            hits = xp.count_nonzero((output > true_score).sum(axis=1) < self.k)
        self.total = self.total + hits
        self.count += n


class MeanAbsoluteError(Metric):
    """Mean of ``|output - target|`` over all elements."""

    name = "mae"

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        diff = output - target.reshape(output.shape).astype(output.dtype)
        self.total = self.total + xp.abs(diff).sum(dtype=np.float64)
        self.count += int(output.size)


class MeanSquaredError(Metric):
    """Mean of ``(output - target)**2`` over all elements."""

    name = "mse"

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        diff = output - target.reshape(output.shape).astype(output.dtype)
        self.total = self.total + (diff * diff).sum(dtype=np.float64)
        self.count += int(output.size)


def get_metric(spec: str | Metric | Callable[[Any, Any], Any]) -> Metric:
    """A fresh Metric from a name: 'accuracy' ('acc'), 'topK' (e.g. 'top5'), 'mae', 'mse'.

    A Metric instance is returned as is; a function ``fn(output, target)`` becomes a
    :class:`FunctionMetric`.
    """
    if isinstance(spec, Metric):
        return spec
    if callable(spec):
        return FunctionMetric(spec)
    if not isinstance(spec, str):
        raise TypeError(f"metric must be a name or a Metric, got {spec!r}")
    name = spec.lower()
    if name in ("accuracy", "acc"):
        return Accuracy()
    if name.startswith("top") and name[3:].isdigit():
        return TopKAccuracy(int(name[3:]))
    if name in ("mae", "mean_absolute_error"):
        return MeanAbsoluteError()
    if name in ("mse", "mean_squared_error"):
        return MeanSquaredError()
    raise ValueError(f"unknown metric {spec!r}; expected 'accuracy', 'top5' (any topK), "
                     f"'mae', 'mse' or a minidl.train.Metric")


def _same_device(output: Any, target: Any) -> tuple[Any, Any]:
    """The arrays of ``output`` and ``target``, the target moved to the output's device:
    host labels are the common case, and CuPy refuses to compare with a NumPy array."""
    out, tgt = _array(output), _array(target)
    return out, to_device(tgt, device_of(out))


def accuracy(output: Any, target: Any) -> float:
    """Accuracy of (N, C) scores (argmax) or (N,) binary probabilities against labels (N,)."""
    m = Accuracy()
    m.update(*_same_device(output, target))
    return m.compute()


def top_k_accuracy(output: Any, target: Any, k: int = 5) -> float:
    """Fraction of rows of (N, C) ``output`` whose label (N,) is among the k highest scores."""
    m = TopKAccuracy(k)
    m.update(*_same_device(output, target))
    return m.compute()


def confusion_matrix(target: Any, pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts (C, C) int64: row = true class, column = predicted class.

    ``pred`` may be class indices (N,) or scores (N, C) (argmax is taken).
    """
    t = to_numpy(_array(target)).reshape(-1).astype(np.int64)
    p = to_numpy(_array(pred))
    p = (p.argmax(axis=1) if p.ndim == 2 else p.reshape(-1)).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: target has {t.size} labels but pred has {p.size}")
    c = int(num_classes) if num_classes is not None else int(max(t.max(initial=-1),
                                                                 p.max(initial=-1)) + 1)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def most_confused(cm: np.ndarray, top: int = 3) -> list[tuple[int, int, int]]:
    """The ``top`` most frequent mistakes of a confusion matrix as (true, predicted, count),
    largest first (only pairs with at least one mistake)."""
    off = np.array(cm, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [(int(i // off.shape[1]), int(i % off.shape[1])) for i in order]
    return [(a, b, int(off[a, b])) for a, b in pairs if off[a, b] > 0]


# ============================================================================================
# Losses
# ============================================================================================

def get_loss(spec: str | Callable[[Any, Any], Tensor]) -> Callable[[Any, Any], Tensor]:
    """A loss callable ``loss(output, target) -> scalar Tensor`` from a name or a callable.

    Names: 'cross_entropy' (alias 'ce', 'categorical_crossentropy'), 'nll', 'mse',
    'bce' (probabilities), 'bce_with_logits'.
    """
    if callable(spec):
        return spec
    from .. import functional as F  # noqa: PLC0415 - keeps the name table next to its use

    table = {
        "cross_entropy": F.cross_entropy, "ce": F.cross_entropy,
        "categorical_crossentropy": F.cross_entropy,
        "sparse_categorical_crossentropy": F.cross_entropy,
        "nll": F.nll_loss, "nll_loss": F.nll_loss,
        "mse": F.mse_loss, "mse_loss": F.mse_loss, "mean_squared_error": F.mse_loss,
        "bce": F.binary_cross_entropy, "binary_crossentropy": F.binary_cross_entropy,
        "bce_with_logits": F.binary_cross_entropy_with_logits,
    }
    if not isinstance(spec, str) or spec.lower() not in table:
        raise ValueError(f"unknown loss {spec!r}; expected a callable or one of "
                         f"{sorted(table)}")
    return table[spec.lower()]


# ============================================================================================
# One step
# ============================================================================================

class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` (both from 1) say where."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None,
                 value: float | None = None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.value = epoch, step, value


def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, (tuple, list)):
        return type(x)(_detach(v) for v in x)
    return x


def train_step(model: Callable[..., Any], inputs: Sequence[Tensor], target: Any,
               loss_fn: Callable[[Any, Any], Tensor], optimizer: Any, *,
               check_finite: bool = False, grad_clip: float | None = None,
               parameters: Sequence[Tensor] | None = None,
               regularization: bool = True) -> tuple[Tensor, Any]:
    """One optimisation step: zero grads, forward, loss (+ the model's regularization loss),
    backward, (clip), update.

    ``inputs`` are the model's positional inputs (e.g. ``(x,)`` with x (N, C, H, W)),
    ``target`` whatever ``loss_fn(output, target)`` expects. Returns ``(loss, output)``,
    both detached from the graph (loss 0-d, still on the device: no host sync).

    With ``check_finite=True`` a NaN/Inf loss raises :class:`NonFiniteLossError` *before*
    the update, so the weights stay the last good ones (this reads the loss back: cheap on
    the CPU, a sync on the GPU). ``grad_clip`` clips the global gradient norm of
    ``parameters`` (default: ``model.parameters()``). ``regularization=False`` leaves out
    ``model.regularization_loss()``, for loss functions that add it themselves.
    """
    optimizer.zero_grad()
    output = model(*inputs)
    loss = loss_fn(output, target)
    if regularization:
        loss = _add_regularization(model, loss)
    if not isinstance(loss, Tensor) or loss.size != 1:
        shape = getattr(loss, "shape", None)
        raise ValueError(f"train_step: the loss must be a one-element Tensor, got "
                         f"{type(loss).__name__} of shape {shape}")
    if check_finite:
        value = float(to_numpy(loss.data).reshape(()))
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss is {value}", value=value)
    loss.backward()
    if grad_clip is not None:
        from ..nn.utils import clip_grad_norm_  # noqa: PLC0415 - nn sits below; lazy import

        clip_grad_norm_(list(parameters) if parameters is not None else model.parameters(),
                        grad_clip)
    optimizer.step()
    return loss.detach(), _detach(output)


def _add_regularization(model: Any, loss: Any) -> Any:
    """``loss + model.regularization_loss()`` when layers carry weight regularizers (Keras'
    ``weight_regularizer=``); the reported loss includes the penalty, as in Keras."""
    reg_fn = getattr(model, "regularization_loss", None)
    if reg_fn is None:
        return loss
    reg = reg_fn()
    return loss + reg if isinstance(reg, Tensor) else loss


# ============================================================================================
# Callbacks
# ============================================================================================

class Callback:
    """Hooks the Trainer calls; override the ones you need.

    ``logs`` in ``on_epoch_end`` holds the epoch's figures (``loss``, metrics, ``val_*``,
    ``lr``, ``time``) as Python floats. Set ``trainer.stop_training = True`` to stop after
    the current epoch. Callbacks with state that a resumed run needs define
    ``state_dict()`` / ``load_state_dict()``; the Trainer stores it in its checkpoints.
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, step: int) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...

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
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss",
                 save_best_only: bool = True, mode: str = "auto",
                 save_last: bool | str | os.PathLike = True, verbose: int = 0) -> None:
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

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
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
    when training stops (early or not)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True, verbose: int = 0) -> None:
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

    def on_train_begin(self, trainer: Trainer) -> None:
        self.stopped_epoch = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                self._best_weights = {k: v.copy() for k, v in _arrays(trainer.model.state_dict())}
            return
        self.wait += 1
        if self.wait >= self.patience:  # Keras' rule: patience epochs without improvement
            trainer.stop_training = True
            self.stopped_epoch = epoch + 1
            if self.verbose:
                print(f"EarlyStopping: no improvement of {self._monitor.monitor} for "
                      f"{self.wait} epochs; stopping after epoch {epoch + 1} (best: epoch "
                      f"{self.best_epoch}, {self._monitor.monitor}={self.best:.4g})")

    def on_train_end(self, trainer: Trainer) -> None:
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


def _arrays(state: Any) -> Iterable[tuple[str, Any]]:
    """(name, array) pairs of a model state dict (values may be arrays or Tensors)."""
    for k, v in state.items():
        yield k, (v.data if isinstance(v, Tensor) else v)


def _scheduler_interval(scheduler: Any, interval: str) -> str:
    if interval not in ("auto", "epoch", "step"):
        raise ValueError(f"scheduler interval must be 'auto', 'epoch' or 'step', got {interval!r}")
    if interval != "auto":
        return interval
    declared = getattr(scheduler, "interval", None)
    if declared in ("epoch", "step"):
        return declared
    # OneCycle is defined over optimisation steps; the other classic schedules over epochs.
    return "step" if type(scheduler).__name__ == "OneCycleLR" else "epoch"


class LRSchedulerStep(Callback):
    """Call ``scheduler.step()`` after every epoch or, with ``interval='step'``, every batch
    ('auto': per step for OneCycleLR, per epoch otherwise). ReduceLROnPlateau is stepped
    with the epoch's ``val_loss`` (``loss`` without validation). ``Trainer(scheduler=...)``
    adds this callback for you."""

    def __init__(self, scheduler: Any, interval: str = "auto") -> None:
        self.scheduler = scheduler
        self.interval = _scheduler_interval(scheduler, interval)

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.interval != "epoch":
            return
        if type(self.scheduler).__name__ == "ReduceLROnPlateau":
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

    A fresh run overwrites the file; a resumed run (trainer.epoch > 0 at start) appends.
    Each row is flushed, so the file can be plotted while training runs.
    """

    def __init__(self, path: str | os.PathLike, append: bool | None = None) -> None:
        self.path, self.append = Path(path), append
        self._fields: list[str] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        append = self.append if self.append is not None else trainer.epoch > 0
        self._fields = None
        if append and self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                self._fields = next(csv.reader(f), None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        row = {"epoch": epoch + 1, **logs}
        new = self._fields is None
        if new:
            self._fields = list(row)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


# ============================================================================================
# Checkpoint files
# ============================================================================================

_FORMAT = "minidl-training-checkpoint"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a training state (nested dicts/lists of arrays, numbers, strings) atomically.

    Goes through :func:`minidl.io.save` (an ``.npz`` with a JSON record; temporary file, then
    rename), so Python ints of any size (RNG states) survive exactly and an interrupted save
    leaves the previous file intact.
    """
    from .. import io  # noqa: PLC0415 - lazy, like every heavier sibling

    io.save({"format": _FORMAT, **state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (arrays come back as NumPy arrays).

    Raises FileNotFoundError for a missing file and ValueError (``minidl.io.CheckpointError``
    for damaged files) for anything that is not a training checkpoint.
    """
    from .. import io  # noqa: PLC0415

    state = io.load(path)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"load_checkpoint: {path} is not a minidl training checkpoint (found "
                         f"{keys}...; a plain weights file loads with model.load_state_dict("
                         f"minidl.io.load(path)))")
    return state


# ============================================================================================
# Progress display
# ============================================================================================

def _format_logs(logs: dict[str, float]) -> str:
    parts = []
    for k, v in logs.items():
        if k == "time":
            parts.append(f"{v:.1f}s")
        elif k == "lr":
            parts.append(f"lr {v:.3g}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


class _Progress:
    """A tqdm bar on a terminal (verbose=1), or one line per epoch (verbose=2), or nothing."""

    def __init__(self, verbose: int, total: int | None, desc: str) -> None:
        self.bar = None
        self.verbose = verbose
        if verbose == 1 and _isatty(sys.stderr):
            from tqdm.auto import tqdm  # noqa: PLC0415 - lazy: only when a bar is shown

            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=True,
                            dynamic_ncols=True, file=sys.stderr)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, figures: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in figures.items()}, refresh=False)

    def close(self, logs: dict[str, float] | None = None, line: str | None = None) -> None:
        """Finish the bar with the epoch's figures (or print ``line`` at verbose=2)."""
        if self.bar is not None:
            if logs is not None:
                shown = {k: v for k, v in logs.items() if k not in ("lr", "time")}
                self.bar.set_postfix_str(", ".join(f"{k}={v:.4g}" for k, v in shown.items()),
                                         refresh=True)
            self.bar.close()
            self.bar = None
        elif line is not None and self.verbose >= 2:
            print(line, flush=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


# ============================================================================================
# The Trainer
# ============================================================================================

class History(dict):
    """Per-epoch figures: ``history['loss'][i]`` is the mean training loss of epoch i + 1.

    Keys: ``epoch`` (from 1), ``loss``, one per metric (``accuracy``, ``top5``, ...), the
    same with ``val_`` when validating, ``lr`` (learning rate of the epoch) and ``time``
    (seconds).
    """

    def append(self, logs: dict[str, float]) -> None:
        """Add one epoch. Lists stay aligned: a key missing in some epochs (validation in
        only some ``fit`` calls) holds NaN there."""
        n = max((len(v) for v in self.values()), default=0)
        for k, v in logs.items():
            self.setdefault(k, [float("nan")] * n).append(v)
        for v in self.values():
            if len(v) == n:
                v.append(float("nan"))

    def last(self) -> dict[str, float]:
        """The figures of the latest epoch."""
        return {k: v[-1] for k, v in self.items() if v}


class Trainer:
    """Fit a model with an optimiser and a loss, with metrics, callbacks and checkpoints.

    Args:
        model: a ``minidl.nn.Module`` (anything callable with ``parameters()``, ``train()``,
            ``eval()``, ``state_dict()`` and ``load_state_dict()``).
        optimizer: a ``minidl.optim`` optimiser over the model's parameters (may be None for
            evaluate/predict only).
        loss: a name ('cross_entropy', 'mse', 'bce', 'bce_with_logits', 'nll') or a callable
            ``loss(output, target) -> scalar Tensor``.
        metrics: names ('accuracy', 'top5', 'mae', 'mse') or :class:`Metric` objects.
        device: 'cpu' or 'cuda'; the model is moved there. None: where its parameters are.
        callbacks: :class:`Callback` objects (ModelCheckpoint, EarlyStopping, CSVLogger, ...).
        scheduler: an LR scheduler stepped per epoch, or per batch for OneCycleLR
            (``scheduler_interval`` overrides).
        verbose: 0 silent; 1 a progress bar per epoch on a terminal (nothing otherwise);
            2 one line per epoch.
        sync_every: read loss and metrics back to the host every this many steps (for the
            bar and the NaN check). Default: every step on the CPU, every 50 on the GPU.
        grad_clip: clip the global gradient norm to this value before each update.
        num_inputs: how many leading fields of a batch are model inputs (default: all but
            the last, which is the target; the rest form a tuple target when more remain).
        regularization: add ``model.regularization_loss()`` to the loss (set False when the
            loss callable already does).

    Batches are tuples of Tensors as a ``minidl.data.DataLoader`` yields them, ``(x, y)``
    for one input; they are moved to ``device`` when they are elsewhere.
    """

    def __init__(self, model: Any, optimizer: Any = None,
                 loss: str | Callable[[Any, Any], Tensor] = "cross_entropy",
                 metrics: Sequence[str | Metric] | None = ("accuracy", "top5"),
                 device: str | None = None, callbacks: Sequence[Callback] = (),
                 scheduler: Any = None, scheduler_interval: str = "auto", verbose: int = 1,
                 sync_every: int | None = None, grad_clip: float | None = None,
                 num_inputs: int | None = None, regularization: bool = True) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = get_loss(loss)
        self.metric_specs = list(metrics or [])
        self.metrics = [get_metric(m) for m in self.metric_specs]
        names = ["loss"] + [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"Trainer: metric names must be distinct, got {names}")
        if device is None:
            first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            device = first.device if first is not None else get_default_device()
        elif hasattr(model, "to"):
            model.to(device)
        self.device = device
        self.scheduler = scheduler
        self.callbacks = list(callbacks)
        if scheduler is not None:
            self.callbacks.insert(0, LRSchedulerStep(scheduler, scheduler_interval))
        if verbose not in (0, 1, 2):
            raise ValueError(f"Trainer: verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = verbose
        self.sync_every = sync_every if sync_every is not None else (
            1 if device == "cpu" else 50)
        if self.sync_every < 1:
            raise ValueError(f"Trainer: sync_every must be >= 1, got {sync_every}")
        self.grad_clip = grad_clip
        self.num_inputs = num_inputs
        self.regularization = regularization
        self.epoch = 0                 # epochs completed (the next one is self.epoch + 1)
        self.global_step = 0           # optimisation steps taken
        self.history = History()
        self.stop_training = False
        self._train_loader: Any = None

    # ---- batches -------------------------------------------------------------------------
    def unpack(self, batch: Any) -> tuple[tuple[Tensor, ...], Any]:
        """Split a batch into (model inputs, target), moved to the trainer's device."""
        if isinstance(batch, Tensor):
            batch = (batch,)
        batch = tuple(self._to_device(b) for b in batch)
        k = self.num_inputs if self.num_inputs is not None else max(len(batch) - 1, 1)
        inputs, rest = batch[:k], batch[k:]
        target = rest[0] if len(rest) == 1 else (rest if rest else None)
        return inputs, target

    def _to_device(self, x: Any) -> Any:
        if isinstance(x, Tensor):
            return x.to(self.device) if x.device != self.device else x
        if isinstance(x, (tuple, list)):
            return type(x)(self._to_device(v) for v in x)
        if hasattr(x, "shape"):
            return tensor(to_device(x, self.device))
        return x

    # ---- one epoch ----------------------------------------------------------------------
    def run_epoch(self, loader: Iterable[Any], train: bool = True, desc: str = "",
                  show: bool = True) -> dict[str, float]:
        """One pass over ``loader``: with ``train=True`` a training epoch (one
        :func:`train_step` per batch, per-batch callbacks), else an evaluation pass under
        ``no_grad``. Returns ``{'loss': mean loss, <metric>: value, ...}``.

        Raises :class:`NonFiniteLossError` naming the epoch and step when the loss is NaN or
        infinite (checked every ``sync_every`` steps; on the CPU before the update).
        """
        model = self.model
        if train:
            if self.optimizer is None:
                raise ValueError("Trainer: fit needs an optimizer (Trainer(model, optimizer, ...))")
            model.train()
        else:
            model.eval()
        for m in self.metrics:
            m.reset()
        total = len(loader) if hasattr(loader, "__len__") else None
        progress = _Progress(self.verbose if show else 0, total, desc)
        pending: list[tuple[Any, int]] = []   # (device 0-d loss, batch size) not yet read
        loss_sum, count, step = 0.0, 0, 0
        check_now = self.sync_every == 1

        def sync() -> None:
            nonlocal loss_sum, count
            if not pending:
                return
            xp = get_array_module(pending[0][0])
            values = to_numpy(xp.stack([p[0].reshape(()) for p in pending])).astype(np.float64)
            sizes = np.array([p[1] for p in pending], dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                first = step - len(pending) + int(bad[0]) + 1
                pending.clear()
                raise self._nonfinite(float(values[bad[0]]), first, total, train)
            loss_sum += float((values * sizes).sum())
            count += int(sizes.sum())
            pending.clear()

        try:
            with no_grad() if not train else contextlib.nullcontext():
                for batch in loader:
                    step += 1
                    inputs, target = self.unpack(batch)
                    if train:
                        try:
                            loss, output = train_step(
                                model, inputs, target, self.loss_fn, self.optimizer,
                                check_finite=check_now, grad_clip=self.grad_clip,
                                regularization=self.regularization)
                        except NonFiniteLossError as e:
                            raise self._nonfinite(e.value, step, total, train) from None
                        self.global_step += 1
                    else:
                        output = model(*inputs)
                        loss = self.loss_fn(output, target)
                        if self.regularization:
                            loss = _add_regularization(model, loss)
                    n = _batch_size(target, inputs)
                    pending.append((loss.data, n))
                    for m in self.metrics:
                        m.update(output, target)
                    if train:
                        for cb in self.callbacks:
                            cb.on_batch_end(self, step)
                    progress.update()
                    if step % self.sync_every == 0:
                        sync()
                        if progress.active:
                            progress.show(self._figures(loss_sum, count))
            if step == 0:
                raise ValueError("Trainer: the loader yielded no batches")
            sync()
            figures = self._figures(loss_sum, count)
        except BaseException:
            progress.close()
            raise
        self._progress = progress  # closed by the caller, which knows the full epoch line
        return figures

    def _figures(self, loss_sum: float, count: int) -> dict[str, float]:
        out = {"loss": loss_sum / count if count else float("nan")}
        for m in self.metrics:
            out[m.name] = m.compute()
        return out

    def _nonfinite(self, value: float | None, step: int, total: int | None,
                   train: bool) -> NonFiniteLossError:
        epoch = self.epoch + 1
        where = f"step {step}" + (f" of {total}" if total else "")
        if train:
            msg = f"training loss became {value} at epoch {epoch}, {where}; training stopped."
        else:
            msg = f"evaluation loss became {value} at {where} (after {self.epoch} epochs)."
        saved = [cb.last_saved for cb in self.callbacks
                 if isinstance(cb, ModelCheckpoint) and cb.last_saved is not None]
        if saved:
            path, ep = saved[-1]
            msg += (f" The last good checkpoint is {path} (epoch {ep}); resume from it with "
                    f"a lower learning rate or gradient clipping.")
        else:
            msg += " Try a lower learning rate or gradient clipping."
        return NonFiniteLossError(msg, epoch=epoch, step=step, value=value)

    # ---- public loop ---------------------------------------------------------------------
    def fit(self, train_loader: Iterable[Any], epochs: int, val_loader: Iterable[Any] | None = None,
            resume: str | os.PathLike | None = None) -> History:
        """Train until ``epochs`` epochs are complete (counted over the trainer's life,
        so after ``resume`` only the remaining ones run). Returns :attr:`history`.

        ``resume`` is a checkpoint written by ModelCheckpoint / :meth:`save_checkpoint`; the
        model, optimiser, scheduler, epoch, RNG, history, callbacks and the loader's shuffling
        state are restored from it, so the run continues exactly as if never stopped.
        """
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"Trainer.fit: epochs must be an int >= 0, got {epochs!r}")
        self._train_loader = train_loader
        if resume is not None:
            self.load_checkpoint(resume, train_loader)
        if self.epoch >= epochs:
            warnings.warn(f"Trainer.fit: already {self.epoch} epochs done of epochs={epochs}; "
                          f"nothing to train (epochs counts the total, pass a larger value to "
                          f"train more)", stacklevel=2)
            return self.history
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        try:
            while self.epoch < epochs and not self.stop_training:
                self._fit_epoch(train_loader, epochs, val_loader)
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return self.history

    def _fit_epoch(self, train_loader: Any, epochs: int, val_loader: Any) -> None:
        epoch = self.epoch
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch)
        if hasattr(train_loader, "set_epoch"):
            # The loader's shuffle order follows the trainer's epoch: resumable, reproducible.
            train_loader.set_epoch(epoch)
        lr = self.current_lr()
        start = time.perf_counter()
        logs = self.run_epoch(train_loader, train=True, desc=f"epoch {epoch + 1}/{epochs}")
        progress = self._progress
        if val_loader is not None:
            try:
                val = self.run_epoch(val_loader, train=False, show=False)
            except BaseException:
                progress.close()
                raise
            logs.update({f"val_{k}": v for k, v in val.items()})
        if lr is not None:
            logs["lr"] = lr
        logs["time"] = time.perf_counter() - start
        self.epoch = epoch + 1
        self.history.append({"epoch": epoch + 1, **logs})
        progress.close(logs, f"epoch {epoch + 1}/{epochs}  {_format_logs(logs)}")
        # Checkpoints go last, so the state they save includes every other callback's update
        # for this epoch (scheduler step, early-stopping counters): resuming is then exact.
        ordered = sorted(self.callbacks, key=lambda cb: isinstance(cb, ModelCheckpoint))
        for cb in ordered:
            cb.on_epoch_end(self, epoch, logs)

    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Mean loss and metrics over ``loader`` in eval mode, without gradients.

        Returns ``{'loss': ..., 'accuracy': ..., ...}``; the model's train/eval mode is
        restored afterwards.
        """
        was_training = getattr(self.model, "training", False)
        try:
            out = self.run_epoch(loader, train=False)
            self._progress.close()
        finally:
            if was_training:
                self.model.train()
        return out

    def predict(self, data: Any, batch_size: int = 256) -> Any:
        """Model outputs for ``data`` as a host NumPy array (N, ...) (a tuple of arrays for
        multi-output models).

        ``data`` is an array of inputs (uint8 images become float32 in [0, 1], as in the
        DataLoader), a tuple of input arrays, or a loader whose batches start with the
        inputs (a trailing target field is ignored when ``num_inputs`` allows).
        """
        from ..data import DataLoader  # noqa: PLC0415 - data sits beside train, lazily

        if isinstance(data, Tensor) or (hasattr(data, "shape") and hasattr(data, "dtype")):
            loader: Any = DataLoader((data,), batch_size=batch_size, device=self.device)
            k = 1
        elif isinstance(data, tuple) and all(hasattr(a, "shape") for a in data):
            loader, k = DataLoader(data, batch_size=batch_size, device=self.device), len(data)
        else:
            loader, k = data, None
        was_training = getattr(self.model, "training", False)
        self.model.eval()
        outs: list[Any] = []
        try:
            with no_grad():
                for batch in loader:
                    if isinstance(batch, Tensor):
                        batch = (batch,)
                    if k is not None:
                        inputs = tuple(self._to_device(b) for b in batch[:k])
                    else:
                        inputs, _ = self.unpack(batch)
                    out = self.model(*inputs)
                    outs.append(tuple(o.data for o in out) if isinstance(out, (tuple, list))
                                else out.data)
        finally:
            if was_training:
                self.model.train()
        if not outs:
            raise ValueError("Trainer.predict: no data")
        if isinstance(outs[0], tuple):
            xp = get_array_module(*outs[0])
            return tuple(to_numpy(xp.concatenate([o[i] for o in outs]))
                         for i in range(len(outs[0])))
        xp = get_array_module(outs[0])
        return to_numpy(xp.concatenate(outs))

    # ---- learning rate -------------------------------------------------------------------
    def current_lr(self) -> float | None:
        """The learning rate of the first parameter group (None when unknown)."""
        groups = getattr(self.optimizer, "param_groups", None)
        if groups:
            lr = groups[0].get("lr") if isinstance(groups[0], dict) else None
            return float(lr) if lr is not None else None
        lr = getattr(self.optimizer, "lr", None)
        return float(lr) if lr is not None else None

    def weights_finite(self) -> bool:
        """True when every parameter is finite (one host sync)."""
        params = [p.data for p in self.model.parameters()]
        if not params:
            return True
        xp = get_array_module(*params)
        return bool(all(bool(xp.isfinite(p).all()) for p in params))

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: model, optimiser, scheduler, epoch, step, RNG,
        the train loader's position, history and callback state."""
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": dict(_arrays(self.model.state_dict())),
            "rng": get_rng_state(),
            "history": {k: list(v) for k, v in self.history.items()},
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "callback_types": [type(cb).__name__ for cb in self.callbacks],
        }
        if self.optimizer is not None and hasattr(self.optimizer, "state_dict"):
            state["optimizer"] = self.optimizer.state_dict()
        if self._train_loader is not None and hasattr(self._train_loader, "state_dict"):
            state["loader"] = self._train_loader.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], train_loader: Any = None) -> None:
        """Restore a :meth:`state_dict`. The model is left unchanged if anything fails."""
        missing = {"epoch", "model"} - set(state)
        if missing:
            raise ValueError(f"Trainer.load_state_dict: checkpoint lacks {sorted(missing)}")
        types = state.get("callback_types", [])
        mine = [type(cb).__name__ for cb in self.callbacks]
        if types and types != mine:
            raise ValueError(f"Trainer.load_state_dict: checkpoint was written with callbacks "
                             f"{types}, this trainer has {mine}")
        backup = {k: v.copy() for k, v in _arrays(self.model.state_dict())}
        try:
            self.model.load_state_dict(state["model"])
            if "optimizer" in state and self.optimizer is not None:
                # the optimiser copies each state array to its parameter's device
                self.optimizer.load_state_dict(state["optimizer"])
            for cb, cb_state in zip(self.callbacks, state.get("callbacks", [])):
                cb.load_state_dict(cb_state)
        except BaseException:
            self.model.load_state_dict(backup)
            raise
        if "rng" in state:
            set_rng_state(state["rng"])
        loader = train_loader if train_loader is not None else self._train_loader
        if loader is not None and "loader" in state and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(state["loader"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self.history = History({k: list(v) for k, v in state.get("history", {}).items()})

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (see :func:`save_checkpoint`)."""
        save_checkpoint(self.state_dict(), path)

    def load_checkpoint(self, path: str | os.PathLike, train_loader: Any = None) -> None:
        """Restore the state saved in ``path`` (and the train loader's, when given)."""
        self.load_state_dict(load_checkpoint(path), train_loader)


def _batch_size(target: Any, inputs: Sequence[Any]) -> int:
    ref = _first(target) if target is not None else inputs[0]
    shape = getattr(ref, "shape", None)
    return int(shape[0]) if shape else 1


