"""The LRScheduler base class: torch's chainable stepping, ``initial_lr``, state dicts."""
from __future__ import annotations

import copy
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ..optimizer import Optimizer

__all__ = ["LRScheduler"]


class LRScheduler:
    """Base class with ``torch.optim.lr_scheduler.LRScheduler``'s protocol.

    Construction records each group's ``initial_lr`` (``base_lrs``) and makes the first
    step, to ``last_epoch = 0``. Each ``step()`` adds one to ``last_epoch`` and sets every
    group's ``lr`` from :meth:`get_lr`, which, as in torch, is the *chainable* form: it
    updates the group's current ``lr`` (StepLR multiplies it by ``gamma`` at each boundary)
    rather than recomputing it from ``base_lr``, so several schedulers stepped on one
    optimiser compose. Where torch has a closed form (``_get_closed_form_lr``), it is used by
    ``step(epoch)`` and by :class:`SequentialLR` when it restarts a scheduler.

    ``last_epoch`` other than -1 resumes a run: the groups must then hold ``initial_lr``
    (the optimiser's ``load_state_dict`` restores it with the current ``lr``).
    """

    _is_initial = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a minidl optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, g in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                g.setdefault("initial_lr", g["lr"])
            elif "initial_lr" not in g:
                raise KeyError(f"{type(self).__name__}: resuming (last_epoch={last_epoch}) needs "
                               f"'initial_lr' in parameter group {i}")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """The step made by construction (and by SequentialLR when a scheduler starts):
        while ``_is_initial`` is set, the chainable forms keep the current lr rather than
        apply a step's factor a second time on resuming."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The next learning rates, computed from the groups' current ``lr`` (chainable form).

        Called by :meth:`step` after ``last_epoch`` moved on; to read the rates in use, call
        :meth:`get_last_lr`.
        """
        raise NotImplementedError

    def _current(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (or batch) and set every group's ``lr``.

        ``step(epoch)`` jumps to ``epoch`` with the closed form where there is one; torch
        deprecates it, and so it warns here too.
        """
        self._step_count += 1
        if epoch is not None:
            warnings.warn(f"{type(self).__name__}.step(epoch) is deprecated (as in torch): "
                          "call step() once per epoch", UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch: float | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, values):
            g["lr"] = lr
        self._last_lr = self._current()

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimiser (copied, so later steps do not change it)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the optimiser's lrs are restored by its own)."""
        self.__dict__.update(copy.deepcopy(dict(state)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.get_last_lr()})"


def _format_param(scheduler: str, name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """``value`` once per parameter group: a list or tuple must have one entry per group."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{scheduler}: {name} has {len(value)} values for {n} parameter "
                             f"groups; give one value or one per group")
        return list(value)
    return [value] * n


def _lambdas(scheduler: str, optimizer: Optimizer,
             fns: Callable[[int], float] | Sequence[Callable[[int], float]]) -> list[Callable]:
    """One function per parameter group (LambdaLR, MultiplicativeLR)."""
    n = len(optimizer.param_groups)
    out = list(fns) if isinstance(fns, (list, tuple)) else [fns] * n
    if len(out) != n:
        raise ValueError(f"{scheduler}: {len(out)} functions for {n} parameter groups")
    return out


def _callable_state(fn: Any) -> Any:
    """What torch saves of a user function: nothing for a plain function or lambda, the
    attributes of a callable object (so its own state resumes)."""
    if fn is None or isinstance(fn, types.FunctionType):
        return None
    return copy.deepcopy(fn.__dict__) if hasattr(fn, "__dict__") else None


def _set_momentum(group: dict[str, Any], value: float, use_beta1: bool) -> None:
    """Set SGD/RMSprop's ``momentum`` or the Adam family's beta1 (OneCycleLR, CyclicLR)."""
    if use_beta1:
        group["betas"] = (value, *tuple(group["betas"])[1:])
    else:
        group["momentum"] = value
