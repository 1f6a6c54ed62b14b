"""One optimisation step (train_step) and the error a non-finite loss raises."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ..autograd import Tensor
from ..backend import to_numpy
from ..nn.utils import clip_grad_norm_

__all__ = ["NonFiniteLossError", "train_step"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` (both from 1) say where.
    ``cause`` is 'data' when the batch itself held NaN/Inf, 'training' otherwise."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None,
                 value: float | None = None, cause: str = "training") -> None:
        super().__init__(message)
        self.epoch, self.step, self.value, self.cause = epoch, step, value, cause


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
    loss = batch_loss(model, loss_fn, output, target, regularization, "train_step")
    if check_finite:
        value = float(to_numpy(loss.data).reshape(()))
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss is {value}", value=value)
    loss.backward()
    if grad_clip is not None:
        clip_grad_norm_(list(parameters) if parameters is not None else model.parameters(),
                        grad_clip)
    optimizer.step()
    return loss.detach(), _detach(output)


def batch_loss(model: Any, loss_fn: Callable[[Any, Any], Tensor], output: Any, target: Any,
               regularization: bool, caller: str) -> Tensor:
    """``loss_fn(output, target)`` (plus the model's regularization loss), checked to be one
    element: a per-sample loss (reduction='none') would otherwise fail far from its cause.
    ``caller`` starts the error message."""
    loss = loss_fn(output, target)
    if regularization:
        loss = add_regularization(model, loss)
    if not isinstance(loss, Tensor) or loss.size != 1:
        shape = getattr(loss, "shape", None)
        raise ValueError(f"{caller}: the loss must be a one-element Tensor, got "
                         f"{type(loss).__name__} of shape {shape}")
    return loss


def add_regularization(model: Any, loss: Any) -> Any:
    """``loss + model.regularization_loss()`` when layers carry weight regularizers (Keras'
    ``weight_regularizer=``); the reported loss includes the penalty, as in Keras."""
    reg_fn = getattr(model, "regularization_loss", None)
    if reg_fn is None:
        return loss
    reg = reg_fn()
    return loss + reg if isinstance(reg, Tensor) else loss
