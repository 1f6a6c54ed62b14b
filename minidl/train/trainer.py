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
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..autograd import Tensor, no_grad, tensor
from ..backend import (
    get_array_module,
    get_default_device,
    get_rng_state,
    to_device,
    to_numpy,
)
from ..data import DataLoader
from .callbacks import Callback, LRSchedulerStep, ModelCheckpoint
from .diagnose import inputs_finite, memory_error, nonfinite_error, nonfinite_location
from .distributed_hooks import agreed_signal, average_over_ranks, prepare, several_ranks
from .epoch_state import EpochProgress, RunningLoss
from .history import History
from .interrupt import StopSignals
from .losses import get_loss
from .metrics import Metric, accuracy, get_metric, sample_count
from .progress import Progress, format_logs
from .resume import TrainerState, check_schedule
from .step import NonFiniteLossError, batch_loss, train_step

__all__ = ["Trainer", "model_accuracy"]


class Trainer(TrainerState):
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
        #: how the line printed on SIGINT/SIGTERM says to resume; ``{path}`` and ``{epochs}``
        #: are filled in (None: the ``trainer.fit(..., resume=path)`` call)
        self.resume_command: str | None = None
        #: saved in every checkpoint as ``state['meta']`` (e.g. the options of the run) and
        #: not restored by :meth:`load_state_dict`: for the caller to compare before resuming
        self.meta: dict[str, Any] = {}
        self._train_loader: Any = None
        self._live: EpochProgress | None = None            # the training epoch in progress
        self._resume_progress: EpochProgress | None = None  # a mid-epoch state to continue
        self._signals: StopSignals | None = None
        self._current: tuple[int, Any, Any] = (0, (), None)  # (step, inputs, target) last run
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

    def _pass(self, loader: Iterable[Any], train: bool, desc: str, show: bool,
              progress: EpochProgress | None = None) -> tuple[dict[str, float], Progress]:
        """:meth:`run_epoch`, returning its progress display still open, for :meth:`fit` to
        close with the whole epoch line (validation figures included); closed on errors.
        ``progress`` is the training epoch's state (from :meth:`fit`): its sums and step
        continue where a resumed checkpoint left them."""
        if train:
            if self.optimizer is None:
                raise ValueError("Trainer: fit needs an optimizer (Trainer(model, optimizer, ...))")
            self.model.train()
        else:
            self.model.eval()
        for m in self.metrics:
            m.reset()
        if progress is not None and progress.saved_metrics:
            progress.restore(self.metrics, self.device)
            progress.saved_metrics = []
        total = len(loader) if hasattr(loader, "__len__") else None
        step = progress.step if progress is not None else 0
        running = progress.running if progress is not None else RunningLoss()
        bar = Progress(self.verbose if show else 0, total, desc, initial=step)
        try:
            with no_grad() if not train else contextlib.nullcontext():
                # held: a DataLoader's state_dict reads its position from the live iterator;
                # none for an epoch whose batches were all done before a stop in validation
                done = progress is not None and progress.finished
                batches = iter(()) if done else iter(loader)
                for batch in batches:
                    step += 1
                    loss, output, target, n, finite = self._batch(batch, train, step, total)
                    running.add(loss.data, n, finite)
                    self.batch_loss = loss  # the last batch's 0-d loss, for callbacks
                    for m in self.metrics:
                        m.update(output, target)
                    if train:
                        if progress is not None:
                            progress.step = step
                        for cb in self._checkpoints_last():
                            cb.on_batch_end(self, step)
                    bar.update()
                    if step % self.sync_every == 0:
                        self._sync(running, step, total, train)
                        if bar.active:
                            bar.show(self._figures(running))
                    self._poll_signals(running, step, total, train)
            if step == 0:
                raise ValueError("Trainer: the loader yielded no batches")
            self._sync(running, step, total, train)
            figures = average_over_ranks(self._figures(running), running.count)
            if progress is not None:
                progress.finish(get_rng_state(), _loader_state(loader), self.metrics)
        except BaseException:
            bar.close()
            raise
        finally:
            self._current = (0, (), None)   # do not keep the last batch alive
        return figures, bar

    def _batch(self, batch: Any, train: bool, step: int,
               total: int | None) -> tuple[Tensor, Any, Any, int, Any]:
        """One batch: a :func:`train_step`, or (evaluating) the forward pass and the loss.
        Returns (loss, output, target, number of samples, device flag: inputs finite)."""
        inputs, target = self.unpack(batch)
        self._current = (step, inputs, target)   # for _sync to locate a NaN in it
        finite = inputs_finite(inputs, target)
        n = sample_count(target, inputs)
        try:
            if train:
                loss, output = train_step(
                    self.model, inputs, target, self.loss_fn, self.optimizer,
                    check_finite=self.sync_every == 1, grad_clip=self.grad_clip,
                    regularization=self.regularization)
                self.global_step += 1
            else:
                output = self.model(*inputs)
                loss = batch_loss(self.model, self.loss_fn, output, target, self.regularization,
                                  "evaluation")
        except NonFiniteLossError as e:
            raise self._nonfinite(e.value, step, total, train,
                                  nonfinite_location(inputs, target)) from None
        except MemoryError as e:
            raise memory_error(e, self.model, inputs, self._where(step, total, train),
                               n) from None
        return loss, output, target, n, finite

    def _sync(self, running: RunningLoss, step: int, total: int | None, train: bool) -> None:
        """Read the pending losses back (one transfer); raise if one is not finite."""
        bad = running.sync(step)
        if bad is not None:
            bad_step, value, data_finite = bad
            location = None
            if not data_finite:
                at_hand = self._current if self._current[0] == bad_step else None
                location = (nonfinite_location(at_hand[1], at_hand[2]) if at_hand else None) \
                    or "NaN or Inf in the batch"
            raise self._nonfinite(value, bad_step, total, train, location)

    def _figures(self, running: RunningLoss) -> dict[str, float]:
        out = {"loss": running.mean()}
        for m in self.metrics:
            out[m.name] = m.compute()
        return out

    def _where(self, step: int, total: int | None, train: bool) -> str:
        """``epoch 2, step 5 of 30`` (training), ``epoch 2 (validation step 3 of 4)``
        (validation in fit) or ``step 3 of 4`` (evaluation)."""
        of = f"step {step}" + (f" of {total}" if total else "")
        if train:
            return f"epoch {self.epoch + 1}, {of}"
        if self._live is not None:
            return f"epoch {self.epoch + 1} (validation {of})"
        return of

    def _nonfinite(self, value: float | None, step: int, total: int | None, train: bool,
                   data_problem: str | None = None) -> NonFiniteLossError:
        """The error for a NaN/Inf loss (see :func:`~minidl.train.diagnose.nonfinite_error`)."""
        kind = "training" if train else ("validation" if self._live is not None
                                         else "evaluation")
        saved = [cb.last_saved for cb in self.callbacks
                 if isinstance(cb, ModelCheckpoint) and cb.last_saved is not None]
        return nonfinite_error(value, self._where(step, total, train), kind, data_problem,
                               saved[-1] if saved else None, self.epoch + 1, step)

    def _settle_losses(self) -> None:
        """Read the training epoch's pending losses into its sum, before a mid-epoch save."""
        live = self._live
        if live is not None and live.running.pending:
            total = len(self._train_loader) if hasattr(self._train_loader, "__len__") else None
            self._sync(live.running, live.step, total, True)

    # ---- stopping on a signal ------------------------------------------------------------
    def _poll_signals(self, running: RunningLoss, step: int, total: int | None,
                      train: bool) -> None:
        """At a step boundary: stop when SIGINT/SIGTERM arrived (sums synced first). With
        several ranks every training step agrees on it (all ranks take the same steps);
        validation shards may differ in length, so there the epoch's end decides."""
        if self._signals is None or (not train and several_ranks()):
            return
        if self._stop_agreed():
            self._sync(running, step, total, train)
            raise _Stop

    def _stop_agreed(self) -> bool:
        """Whether a stop signal reached this process (with several ranks: any rank)."""
        signals = self._signals
        agreed = agreed_signal(signals.received if signals is not None else None)
        if agreed and signals is not None and not signals.received:
            signals.received = agreed  # the line and the exit code name the signal
        return agreed is not None

    # ---- public loop ---------------------------------------------------------------------
    def fit(self, train_loader: Iterable[Any], epochs: int, val_loader: Iterable[Any] | None = None,
            resume: str | os.PathLike | None = None) -> History:
        """Train until ``epochs`` epochs are complete (counted over the trainer's life,
        so after ``resume`` only the remaining ones run). Returns :attr:`history`.

        ``resume`` is a checkpoint written by ModelCheckpoint / :meth:`save_checkpoint`; the
        model, optimiser, scheduler, epoch and step, RNG, history, callbacks, the loader's
        position and a stopped epoch's running sums are restored from it, so the run
        continues exactly as if never stopped.

        SIGINT (Ctrl-C) and SIGTERM stop the run at the next step boundary: the state is
        saved to :meth:`interrupt_checkpoint_path` (mid-epoch), one line on stderr says where
        and how to resume (:attr:`resume_command`), and :class:`TrainingInterrupted` (a
        ``SystemExit`` with code 130 or 143) is raised. A second signal aborts at once.

        Not covered on 'cuda': random ops that draw on the GPU (dropout) use CuPy's
        generator, whose state CuPy cannot save, so a resumed GPU run with dropout draws
        other masks than the uninterrupted one (everything else is restored).
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
        check_schedule(self.callbacks, epochs, train_loader)
        self.stop_training = False
        self._signals = StopSignals()
        try:
            with self._signals:
                self._fit_loop(train_loader, epochs, val_loader)
        finally:
            self._signals, self._live = None, None
        return self.history

    def _fit_loop(self, train_loader: Any, epochs: int, val_loader: Any) -> None:
        """The epochs of :meth:`fit`, between on_train_begin and on_train_end."""
        for cb in self.callbacks:
            cb.on_train_begin(self)
        try:
            while True:
                if self._stop_agreed():
                    raise self._interrupted(epochs)
                if self.epoch >= epochs or self.stop_training:
                    break
                try:
                    self._fit_epoch(train_loader, epochs, val_loader)
                except _Stop:
                    raise self._interrupted(epochs) from None
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)

    def _fit_epoch(self, train_loader: Any, epochs: int, val_loader: Any) -> None:
        epoch = self.epoch
        progress, self._resume_progress = self._resume_progress, None
        if progress is None:
            for cb in self.callbacks:
                cb.on_epoch_begin(self, epoch)
            if hasattr(train_loader, "set_epoch"):
                # The loader's shuffle order follows the trainer's epoch: resumable, reproducible.
                train_loader.set_epoch(epoch)
            progress = EpochProgress(epoch, self.current_lr())
        self._live = progress
        logs, bar = self._pass(train_loader, True, f"epoch {epoch + 1}/{epochs}", True, progress)
        if val_loader is not None:
            try:
                val = self.run_epoch(val_loader, train=False, show=False)
            except BaseException:
                bar.close()
                raise
            logs.update({f"val_{k}": v for k, v in val.items()})
        if progress.lr is not None:
            logs["lr"] = progress.lr
        logs["time"] = progress.seconds()
        self._live = None
        self.epoch = epoch + 1
        self.history.append({"epoch": epoch + 1, **logs})
        bar.close(logs, f"epoch {epoch + 1}/{epochs}  {format_logs(logs)}")
        for cb in self._checkpoints_last():
            cb.on_epoch_end(self, epoch, logs)

    def _checkpoints_last(self) -> list[Callback]:
        """The callbacks with ModelCheckpoints last, so that the state they save includes
        every other callback's update of this step or epoch (scheduler step, early-stopping
        counters): resuming is then exact."""
        return sorted(self.callbacks, key=lambda cb: isinstance(cb, ModelCheckpoint))

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
                    try:
                        out = self.model(*inputs)
                    except MemoryError as e:
                        raise memory_error(e, self.model, inputs, "Trainer.predict",
                                           len(inputs[0]) if inputs else None) from None
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


class _Stop(Exception):
    """Raised at a step boundary after SIGINT/SIGTERM; :meth:`Trainer.fit` saves and stops."""


def _loader_state(loader: Any) -> Any:
    """A loader's position (None for loaders without ``state_dict``)."""
    return loader.state_dict() if hasattr(loader, "state_dict") else None


def model_accuracy(model: Any, x: Any, y: Any, batch_size: int = 500) -> float:
    """The fraction of inputs ``x`` (N, ...) that ``model`` classifies as ``y`` (N,):
    :func:`minidl.train.accuracy` of :meth:`Trainer.predict` (eval mode, no graph)."""
    return accuracy(Trainer(model, metrics=[], verbose=0).predict(x, batch_size), y)
