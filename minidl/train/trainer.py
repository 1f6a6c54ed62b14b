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
history, the LR schedule and callbacks. Other front ends (``minidl.keras``' ``fit`` /
``evaluate`` / ``predict``, the ``minidl`` command) build a Trainer rather than a loop of
their own.

Host syncs: on the GPU, reading a number (``loss.item()``) waits for every queued kernel.
The Trainer keeps running sums of the loss and of every metric on the device and reads
them back once every ``sync_every`` steps (every step on the CPU, where reading is free),
at the end of an epoch, and for the progress bar.
"""
from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..autograd import Tensor, no_grad, tensor
from ..backend import (
    get_array_module,
    get_default_device,
    get_rng_state,
    set_rng_state,
    to_device,
    to_numpy,
)
from ..data import DataLoader
from .callbacks import Callback, LRSchedulerStep, ModelCheckpoint
from .checkpoint import load_checkpoint, save_checkpoint, state_arrays
from .distributed_hooks import (
    average_over_ranks,
    extra_state,
    load_from_rank0,
    prepare,
    rng_state_for_rank,
    save_on_rank0,
)
from .history import History
from .losses import get_loss
from .metrics import Metric, accuracy, get_metric, sample_count
from .progress import Progress, format_logs
from .step import NonFiniteLossError, batch_loss, train_step

__all__ = ["Trainer", "model_accuracy"]

# One part of a trainer's state: (copy the current state, load a state, the state to load).
_StatePart = tuple[Callable[[], Any], Callable[[Any], None], Any]


class Trainer:
    """Fit a model with an optimiser and a loss, with metrics, callbacks and checkpoints.

    Args:
        model: a ``minidl.nn.Module`` (anything callable with ``parameters()``, ``train()``,
            ``eval()``, ``state_dict()`` and ``load_state_dict()``).
        optimizer: a ``minidl.optim`` optimiser over the model's parameters (may be None for
            evaluate/predict only).
        loss: a name of :mod:`minidl.train.losses` (torch's 'cross_entropy', 'nll', 'bce',
            'bce_with_logits', 'mse_loss'; Keras' 'sparse_categorical_crossentropy', 'mse',
            ... with Keras' meaning) or a callable ``loss(output, target) -> scalar Tensor``.
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
        self.metrics = [get_metric(m) for m in metrics or []]
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
        prepare(self)  # several MPI ranks: only rank 0 prints and logs

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
        infinite (checked every ``sync_every`` steps; on the CPU before the update). The
        progress bar (``show`` and ``verbose=1`` on a terminal) is closed on return.
        """
        figures, progress = self._pass(loader, train, desc, show)
        progress.close()
        return figures

    def _pass(self, loader: Iterable[Any], train: bool, desc: str,
              show: bool) -> tuple[dict[str, float], Progress]:
        """:meth:`run_epoch`, returning its progress display still open, for :meth:`fit` to
        close with the whole epoch line (validation figures included); closed on errors."""
        if train:
            if self.optimizer is None:
                raise ValueError("Trainer: fit needs an optimizer (Trainer(model, optimizer, ...))")
            self.model.train()
        else:
            self.model.eval()
        for m in self.metrics:
            m.reset()
        total = len(loader) if hasattr(loader, "__len__") else None
        progress = Progress(self.verbose if show else 0, total, desc)
        running = _RunningLoss()
        step = 0
        try:
            with no_grad() if not train else contextlib.nullcontext():
                for batch in loader:
                    step += 1
                    loss, output, target, n = self._batch(batch, train, step, total)
                    running.add(loss.data, n)
                    self.batch_loss = loss  # the last batch's 0-d loss, for callbacks
                    for m in self.metrics:
                        m.update(output, target)
                    if train:
                        for cb in self.callbacks:
                            cb.on_batch_end(self, step)
                    progress.update()
                    if step % self.sync_every == 0:
                        self._sync(running, step, total, train)
                        if progress.active:
                            progress.show(self._figures(running))
            if step == 0:
                raise ValueError("Trainer: the loader yielded no batches")
            self._sync(running, step, total, train)
            figures = average_over_ranks(self._figures(running), running.count)
        except BaseException:
            progress.close()
            raise
        return figures, progress

    def _batch(self, batch: Any, train: bool, step: int,
               total: int | None) -> tuple[Tensor, Any, Any, int]:
        """One batch: a :func:`train_step`, or (evaluating) the forward pass and the loss.
        Returns (loss, output, target, number of samples)."""
        inputs, target = self.unpack(batch)
        if train:
            try:
                loss, output = train_step(
                    self.model, inputs, target, self.loss_fn, self.optimizer,
                    check_finite=self.sync_every == 1, grad_clip=self.grad_clip,
                    regularization=self.regularization)
            except NonFiniteLossError as e:
                raise self._nonfinite(e.value, step, total, train) from None
            self.global_step += 1
        else:
            output = self.model(*inputs)
            loss = batch_loss(self.model, self.loss_fn, output, target, self.regularization,
                              "evaluation")
        return loss, output, target, sample_count(target, inputs)

    def _sync(self, running: _RunningLoss, step: int, total: int | None, train: bool) -> None:
        """Read the pending losses back (one transfer); raise if one is not finite."""
        bad = running.sync(step)
        if bad is not None:
            raise self._nonfinite(bad[1], bad[0], total, train)

    def _figures(self, running: _RunningLoss) -> dict[str, float]:
        out = {"loss": running.mean()}
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
        logs, progress = self._pass(train_loader, True, f"epoch {epoch + 1}/{epochs}", True)
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
        progress.close(logs, f"epoch {epoch + 1}/{epochs}  {format_logs(logs)}")
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
        finally:
            if was_training:
                self.model.train()
        return out

    def predict(self, data: Any, batch_size: int = 256) -> Any:
        """Model outputs for ``data`` as a host NumPy array (N, ...) (a tuple of arrays for
        multi-output models).

        ``data`` is an array of inputs (uint8 images become float32 in [0, 1], as in the
        DataLoader), a tuple or list of input arrays (one per model input, as Keras'
        ``predict`` takes them), or a loader whose batches start with the inputs (a
        trailing target field is ignored when ``num_inputs`` allows). A tuple or list whose
        items all are arrays or Tensors is always inputs; a list of batch tuples is a loader.
        """
        if isinstance(data, Tensor) or (hasattr(data, "shape") and hasattr(data, "dtype")):
            loader: Any = DataLoader((data,), batch_size=batch_size, device=self.device)
            k = 1
        elif (isinstance(data, (tuple, list)) and data
              and all(hasattr(a, "shape") for a in data)):
            loader = DataLoader(tuple(data), batch_size=batch_size, device=self.device)
            k = len(data)
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
        """True when every parameter is finite: one reduction per parameter, stacked and
        reduced on the device, then one host sync for the answer."""
        params = [p.data for p in self.model.parameters()]
        if not params:
            return True
        xp = get_array_module(*params)
        return bool(xp.stack([xp.isfinite(p).all() for p in params]).all())

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: model, optimiser, scheduler, epoch, step, RNG,
        the train loader's position, history and callback state."""
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": dict(state_arrays(self.model.state_dict())),
            "rng": get_rng_state(),
            "history": {k: list(v) for k, v in self.history.items()},
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "callback_types": [type(cb).__name__ for cb in self.callbacks],
        }
        if self.optimizer is not None and hasattr(self.optimizer, "state_dict"):
            state["optimizer"] = self.optimizer.state_dict()
        if self._train_loader is not None and hasattr(self._train_loader, "state_dict"):
            state["loader"] = self._train_loader.state_dict()
        state.update(extra_state())  # several MPI ranks: every rank's RNG
        return state

    def load_state_dict(self, state: dict[str, Any], train_loader: Any = None) -> None:
        """Restore a :meth:`state_dict`, all or nothing.

        The parts load in turn (model, optimiser, each callback, RNG, train loader); each
        part's current state is copied just before it loads. If any part fails, every part
        already touched gets its copy back and the error is raised: the trainer, its
        callbacks, the global RNG and the loader are then exactly as before the call, so a
        failed ``fit(resume=...)`` leaves nothing half-restored.
        """
        missing = {"epoch", "model"} - set(state)
        if missing:
            raise ValueError(f"Trainer.load_state_dict: checkpoint lacks {sorted(missing)}")
        types = state.get("callback_types", [])
        mine = [type(cb).__name__ for cb in self.callbacks]
        if types and types != mine:
            raise ValueError(f"Trainer.load_state_dict: checkpoint was written with callbacks "
                             f"{types}, this trainer has {mine}")
        epoch, global_step = int(state["epoch"]), int(state.get("global_step", 0))
        history = History({k: list(v) for k, v in state.get("history", {}).items()})
        undo: list[tuple[Callable[[Any], None], Any]] = []
        try:
            for save, load, value in self._state_parts(state, train_loader):
                undo.append((load, save()))  # before load: a part may fail half-loaded
                load(value)
        except BaseException:
            for load, backup in reversed(undo):
                load(backup)
            raise
        self.epoch, self.global_step, self.history = epoch, global_step, history

    def _state_parts(self, state: dict[str, Any], train_loader: Any) -> list[_StatePart]:
        """The parts of ``state`` this trainer has, in loading order."""
        model = self.model
        parts: list[_StatePart] = [(
            lambda: {k: v.copy() for k, v in state_arrays(model.state_dict())},
            model.load_state_dict, state["model"])]
        if "optimizer" in state and self.optimizer is not None:
            # state_dict copies to the host; load_state_dict copies to each parameter's device
            parts.append((self.optimizer.state_dict, self.optimizer.load_state_dict,
                          state["optimizer"]))
        for cb, cb_state in zip(self.callbacks, state.get("callbacks", [])):
            # a deep copy: a callback's state_dict may hand out its own mutable containers
            parts.append((lambda cb=cb: copy.deepcopy(cb.state_dict()), cb.load_state_dict,
                          cb_state))
        if "rng" in state:
            parts.append((get_rng_state, set_rng_state, rng_state_for_rank(state)))
        loader = train_loader if train_loader is not None else self._train_loader
        if "loader" in state and all(hasattr(loader, f) for f in ("state_dict",
                                                                    "load_state_dict")):
            parts.append((loader.state_dict, loader.load_state_dict, state["loader"]))
        return parts

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (see :func:`save_checkpoint`)."""
        save_on_rank0(self.state_dict(), path, save_checkpoint)

    def load_checkpoint(self, path: str | os.PathLike, train_loader: Any = None) -> None:
        """Restore the state saved in ``path`` (and the train loader's, when given)."""
        self.load_state_dict(load_from_rank0(path, load_checkpoint), train_loader)


class _RunningLoss:
    """The sample-weighted sum of an epoch's batch losses. Each batch's 0-d loss stays on the
    device until :meth:`sync` reads all pending ones back in one transfer."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, int]] = []   # (device 0-d loss, batch size) not yet read
        self.total, self.count = 0.0, 0

    def add(self, loss: Any, n: int) -> None:
        self.pending.append((loss, n))

    def sync(self, step: int) -> tuple[int, float] | None:
        """Add the pending losses (the last of them from ``step``) to the sum; returns
        (step, value) of the first one that is NaN or infinite instead, if any."""
        if not self.pending:
            return None
        xp = get_array_module(self.pending[0][0])
        values = to_numpy(xp.stack([p[0].reshape(()) for p in self.pending])).astype(np.float64)
        sizes = np.array([p[1] for p in self.pending], dtype=np.float64)
        first_step = step - len(self.pending) + 1
        self.pending.clear()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return first_step + int(bad[0]), float(values[bad[0]])
        self.total += float((values * sizes).sum())
        self.count += int(sizes.sum())
        return None

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


def model_accuracy(model: Any, x: Any, y: Any, batch_size: int = 500) -> float:
    """The fraction of inputs ``x`` (N, ...) that ``model`` classifies as ``y`` (N,):
    :func:`minidl.train.accuracy` of :meth:`Trainer.predict` (eval mode, no graph)."""
    return accuracy(Trainer(model, metrics=[], verbose=0).predict(x, batch_size), y)
