"""What a Trainer saves and restores (state_dict / load_state_dict, checkpoint files, the
save on SIGINT/SIGTERM), and the check that a schedule covers the run it is asked to carry."""
from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..backend import get_rng_state, set_rng_state
from ..distributed import is_main_process
from .callbacks import Callback, LRSchedulerStep, ModelCheckpoint
from .checkpoint import load_checkpoint, save_checkpoint, state_arrays
from .distributed_hooks import (
    extra_state,
    load_from_rank0,
    rng_state_for_rank,
    save_on_rank0,
    several_ranks,
)
from .epoch_state import EpochProgress
from .history import History
from .interrupt import StopSignals, TrainingInterrupted, announce

__all__ = ["TrainerState", "check_schedule"]

# One part of a trainer's state: (copy the current state, load a state, the state to load).
_StatePart = tuple[Callable[[], Any], Callable[[Any], None], Any]


class TrainerState:
    """The state methods of :class:`minidl.train.Trainer` (a mixin: it uses the trainer's
    model, optimizer, callbacks, metrics, epoch, global_step, history, meta and the epoch in
    progress)."""

    model: Any
    optimizer: Any
    callbacks: list[Callback]
    metrics: list[Any]
    epoch: int
    global_step: int
    history: History
    meta: dict[str, Any]
    _train_loader: Any
    _live: EpochProgress | None
    _resume_progress: EpochProgress | None
    _signals: StopSignals | None
    resume_command: str | None

    def _interrupted(self, epochs: int) -> TrainingInterrupted:
        """Save the state (mid-epoch when an epoch is in progress), print the one line that
        says where it is and how to resume, and return the exception ``fit`` raises."""
        assert self._signals is not None and self._signals.received is not None
        name, live = self._signals.received, self._live
        if live is not None:
            total = len(self._train_loader) if hasattr(self._train_loader, "__len__") else None
            where = (f"epoch {live.epoch + 1}, step {live.step}" + (f" of {total}" if total else "")
                     + (" (during validation)" if live.finished else ""))
            epoch, step = live.epoch + 1, live.step
        else:
            where, epoch, step = f"the end of epoch {self.epoch}", self.epoch, 0
        path = self.interrupt_checkpoint_path()
        if path is not None:
            self.save_checkpoint(path)
            how = (self.resume_command or "trainer.fit(train_loader, epochs={epochs}, "
                   "resume={path!r})").format(path=path, epochs=epochs)
            msg = f"Trainer.fit: stopped by {name} at {where}; saved to {path}; resume with: {how}"
        else:
            msg = (f"Trainer.fit: stopped by {name} at {where}; no checkpoint written (add "
                   f"ModelCheckpoint(path) to the callbacks to make runs resumable)")
        if not several_ranks() or is_main_process():  # one line for the whole job
            announce(msg)
        return TrainingInterrupted(msg, name, path, epoch, step)

    def interrupt_checkpoint_path(self) -> str | None:
        """Where a stop on SIGINT/SIGTERM saves the state: the ``last_path`` of the first
        ModelCheckpoint that keeps one (the file its epochs rewrite too), else None."""
        for cb in self.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.last_path is not None:
                return cb.last_path
        return None

    def _settle_losses(self) -> None:
        """Add the epoch's pending batch losses to its sum (the Trainer raises on NaN)."""
        raise NotImplementedError

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
        if self.meta:
            state["meta"] = self.meta
        if self.optimizer is not None and hasattr(self.optimizer, "state_dict"):
            state["optimizer"] = self.optimizer.state_dict()
        if self._train_loader is not None and hasattr(self._train_loader, "state_dict"):
            state["loader"] = self._train_loader.state_dict()
        live = self._live
        if live is not None:
            # Saved mid-epoch (on a signal, or by a per-batch callback): the epoch's sums and
            # step go along (the pending losses read back first: the sum is added in order,
            # so reading early changes nothing); once its batches are done, the generator
            # and loader states of that moment, so that the resumed run repeats only the
            # validation.
            self._settle_losses()
            state["progress"] = live.state_dict(self.metrics)
            if live.finished:
                state["rng"] = live.rng
                if live.loader is not None:
                    state["loader"] = live.loader
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
            raise ValueError(f"Trainer.load_state_dict: the checkpoint was written by a trainer "
                             f"with callbacks {types}, this one has {mine}; build the Trainer "
                             f"with the same callbacks and scheduler (scheduler=... adds "
                             f"LRSchedulerStep) to resume it")
        epoch, global_step = int(state["epoch"]), int(state.get("global_step", 0))
        history = History({k: list(v) for k, v in state.get("history", {}).items()})
        progress = self._saved_progress(state, epoch, train_loader)
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
        self._resume_progress = progress

    def _saved_progress(self, state: dict[str, Any], epoch: int,
                        train_loader: Any) -> EpochProgress | None:
        """The mid-epoch progress of ``state`` (None at an epoch boundary), checked to be
        resumable with this trainer's loader and metrics."""
        if "progress" not in state:
            return None
        progress = EpochProgress.from_state(state["progress"])
        loader = train_loader if train_loader is not None else self._train_loader
        if progress.epoch != epoch:
            raise ValueError(f"Trainer.load_state_dict: damaged checkpoint: its epoch in "
                             f"progress is {progress.epoch + 1}, its epoch count {epoch}")
        if "loader" not in state or not hasattr(loader, "load_state_dict"):
            raise ValueError(f"Trainer.load_state_dict: the checkpoint was saved mid-epoch "
                             f"(epoch {epoch + 1}, step {progress.step}); resuming it needs "
                             f"the train loader: fit(train_loader, ..., resume=path) with a "
                             f"minidl DataLoader")
        if len(progress.saved_metrics) != len(self.metrics):
            raise ValueError(f"Trainer.load_state_dict: the checkpoint was saved mid-epoch "
                             f"with {len(progress.saved_metrics)} metrics, this trainer has "
                             f"{len(self.metrics)}; resume with the same metrics")
        return progress

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



def check_schedule(callbacks: Sequence[Callback], epochs: int, loader: Any) -> None:
    """Refuse, before training, a per-step schedule with fewer steps than the run needs:
    OneCycleLR(total_steps=189) cannot carry fit(epochs=5) over 63 batches an epoch."""
    if not hasattr(loader, "__len__"):
        return
    for cb in callbacks:
        sched = getattr(cb, "scheduler", None)
        total = getattr(sched, "total_steps", None)
        if not isinstance(cb, LRSchedulerStep) or cb.interval != "step" or total is None:
            continue
        needed = epochs * len(loader)
        if needed > int(total):
            raise ValueError(
                f"Trainer.fit: {type(sched).__name__} covers {int(total)} steps but "
                f"epochs={epochs} x {len(loader)} batches needs {needed}; a one-cycle schedule "
                f"cannot be stretched: train to epochs={int(total) // len(loader)} (the planned "
                f"run), or start a new run with a schedule of {needed} steps")


