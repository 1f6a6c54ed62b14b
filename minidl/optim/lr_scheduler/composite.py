"""Schedulers made of schedulers: SequentialLR (one after another, switching at milestones)
and ChainedScheduler (all of them every step)."""
from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from typing import Any

from ..optimizer import Optimizer
from .base import LRScheduler
from .plateau import ReduceLROnPlateau

__all__ = ["SequentialLR", "ChainedScheduler"]


def _check_members(name: str, optimizer: Optimizer, schedulers: Sequence[Any]) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"{name} expects at least one scheduler, got none")
    for i, s in enumerate(schedulers):
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(f"{name} does not support ReduceLROnPlateau (its step needs the "
                             f"metric), found at index {i}; step it on its own")
        if not isinstance(s, LRScheduler):
            raise TypeError(f"{name}: scheduler {i} is a {type(s).__name__}, not an "
                            "LRScheduler")
        if s.optimizer is not optimizer:
            raise ValueError(f"{name}: scheduler {i} is bound to another optimizer; build "
                             "every scheduler on the same one")


class _Composite(LRScheduler):
    """State dicts hold each member's state dict, as torch's do."""

    _schedulers: list[LRScheduler]

    def state_dict(self) -> dict[str, Any]:
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items()
                 if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        members = state.pop("_schedulers", [])
        if len(members) != len(self._schedulers):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state has "
                             f"{len(members)} schedulers, this one {len(self._schedulers)}")
        self.__dict__.update(copy.deepcopy(state))
        for s, ms in zip(self._schedulers, members):
            s.load_state_dict(ms)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self._schedulers))})"

    def _update_lr(self, epoch: float | None) -> None:
        raise TypeError(f"{type(self).__name__} cannot be restarted at a milestone of a "
                        "SequentialLR; put its members in the outer SequentialLR instead")


class SequentialLR(_Composite):
    """Run ``schedulers`` one after another, switching at the epochs in ``milestones``
    (one fewer than schedulers), as torch does: e.g. a LinearLR warm-up for 5 epochs, then
    CosineAnnealingLR. At a milestone the next scheduler restarts from epoch 0 (its closed
    form, so it starts from ``initial_lr``); build the members first, on the same optimiser.
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int], last_epoch: int = -1) -> None:
        schedulers = list(schedulers)
        _check_members("SequentialLR", optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                             f"{len(schedulers)} schedulers, got {len(milestones)}")
        self._schedulers = schedulers
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for g in optimizer.param_groups:  # undo the members' first steps...
            g["lr"] = g["initial_lr"]
        self._recursive_undo()
        schedulers[0]._initial_step()    # ...and make only the first one's
        self._last_lr = schedulers[0].get_last_lr()

    def _recursive_undo(self, scheds: Sequence[Any] | None = None) -> None:
        for s in self._schedulers if scheds is None else scheds:
            if hasattr(s, "_schedulers"):  # a SequentialLR or ChainedScheduler inside
                self._recursive_undo(s._schedulers)
            else:
                s.last_epoch -= 1

    def step(self) -> None:
        """Advance one epoch with the scheduler whose stretch this is."""
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            s._update_lr(0)  # restart it: its closed form at epoch 0, without a warning
        else:
            s.step()
        self._last_lr = s.get_last_lr()


class ChainedScheduler(_Composite):
    """Step every scheduler of ``schedulers`` at each ``step()``, in order, so their chainable
    forms compose (e.g. ConstantLR's warm-up factor on top of ExponentialLR's decay)."""

    def __init__(self, schedulers: Sequence[LRScheduler],
                 optimizer: Optimizer | None = None) -> None:
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("ChainedScheduler expects at least one scheduler, got none")
        optimizer = optimizer if optimizer is not None else getattr(schedulers[0],
                                                                    "optimizer", None)
        _check_members("ChainedScheduler", optimizer, schedulers)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = self._current()

    def step(self) -> None:
        """Step each scheduler once, in order."""
        for s in self._schedulers:
            s.step()
        self._last_lr = self._current()
