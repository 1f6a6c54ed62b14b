"""Loss functions, with torch.nn.functional's signatures and reductions."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor, as_tensor, is_anomaly_enabled, is_grad_enabled
from ..backend import get_array_module
from .activation import log_softmax, sigmoid
from .elementwise import clip, exp, log
from .reduction import mean, sum
from .shape import unsqueeze

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_same_shape(op: str, x: Tensor, t: Tensor) -> None:
    if x.shape != t.shape:
        raise ValueError(f"{op}: input has shape {x.shape} but target has shape {t.shape}")


def _one_hot(xp: Any, target: Any, classes: int, dtype: Any) -> Any:
    """(N, d...) integer labels -> (N, C, d...) one-hot, by broadcasting (either backend)."""
    ids = xp.arange(classes).reshape((1, classes) + (1,) * (target.ndim - 1))
    return (xp.expand_dims(target, 1) == ids).astype(dtype)


def _check_targets(op: str, logits: Any, target: Any) -> Any:
    """Check integer labels against (N, C, d...) logits; return None, or on the GPU a mask.

    On the CPU an out-of-range label raises ValueError. On the GPU, reading the label range
    back to the host would stall the device on every step, so the check is left to the GPU:
    the returned boolean mask (N, d...) marks the bad labels, and the caller makes their
    losses NaN (a NaN loss that detect_anomaly() traces; inside detect_anomaly(), which syncs
    anyway, the GPU raises the CPU's ValueError).
    """
    n, c = logits.shape[0], logits.shape[1]
    expected = (n,) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{op}: input of shape {tuple(logits.shape)} needs an integer target of "
                         f"shape {expected}, got {tuple(target.shape)}")
    if not target.size:
        return None
    if get_array_module(target) is not np and not is_anomaly_enabled():
        return (target < 0) | (target >= c)
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"{op}: target labels must lie in [0, {c}) for input of shape "
                         f"{tuple(logits.shape)}, got range [{lo}, {hi}]")
    return None


def _poison(xp: Any, losses: Any, bad: Any) -> Any:
    """Per-sample losses with NaN where ``bad`` (the GPU's out-of-range labels) is set."""
    # a NumPy scalar of the loss dtype goes to the kernel as an argument: no host-to-device copy
    return losses if bad is None else xp.where(bad, losses.dtype.type(np.nan), losses)


class CrossEntropy(Function):
    """log-softmax + NLL fused; the gradient is simply ``(softmax(x) * sum(q) - q) * scale``
    (``sum(q)`` is 1 for labels and for probability targets)."""

    keep_inputs = (0, 1)

    def __init__(self, reduction: str, label_smoothing: float) -> None:
        self.reduction, self.smoothing = reduction, label_smoothing

    def forward(self, logits, target):
        xp = get_array_module(logits)
        if logits.ndim < 2:
            raise ValueError(f"cross_entropy: input must be (N, C) or (N, C, d...), got shape "
                             f"{tuple(logits.shape)}")
        classes = logits.shape[1]
        bad = None
        if target.dtype.kind in "iu":
            bad = _check_targets("cross_entropy", logits, target)
            q = _one_hot(xp, target, classes, logits.dtype)
        elif tuple(target.shape) == tuple(logits.shape):
            q = target.astype(logits.dtype)
        else:
            raise ValueError(f"cross_entropy: a float target must have the input's shape "
                             f"{tuple(logits.shape)}, got {tuple(target.shape)}")
        if self.smoothing:
            q = q * (1 - self.smoothing) + self.smoothing / classes
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        if self.needs_input_grad[0]:
            self.p, self.q = xp.exp(logp), q
            # float targets need not sum to 1 (torch allows any weights); labels always do
            self.qsum = None if target.dtype.kind in "iu" else q.sum(axis=1, keepdims=True)
        if self.needs_input_grad[1]:
            self.logp = logp
        self.count = logp.size // classes
        losses = _poison(xp, -(q * logp).sum(axis=1), bad)
        if self.reduction == "mean":
            return xp.asarray(losses.mean())
        if self.reduction == "sum":
            return xp.asarray(losses.sum())
        return losses

    def _scale(self, gy: Tensor) -> Tensor:
        if self.reduction == "mean":
            return gy / self.count
        return gy if self.reduction == "sum" else unsqueeze(gy, 1)

    def backward(self, gy):
        x, t = self.inputs
        s = self.smoothing
        if is_grad_enabled():
            # create_graph: rebuild from the input tensors with ops, so that the gradient
            # differentiates again (w.r.t. the logits and a float target alike)
            logp = log_softmax(x, axis=1)
            p = exp(logp)
            if t.dtype.kind in "iu":
                q, qsum = Tensor(self.q), None
            else:
                q = t * (1 - s) + s / x.shape[1] if s else t
                qsum = sum(q, axis=1, keepdims=True)
        else:
            logp = Tensor(self.logp) if self.needs_input_grad[1] else None
            if self.needs_input_grad[0]:
                p, q = Tensor(self.p), Tensor(self.q)
                qsum = None if self.qsum is None else Tensor(self.qsum)
        gx = gt = None
        if self.needs_input_grad[0]:
            gx = ((p if qsum is None else p * qsum) - q) * self._scale(gy)
        if self.needs_input_grad[1]:
            gt = -logp * (1 - s) * self._scale(gy)
        return gx, gt


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy between ``logits`` (N, C[, d...]) and integer labels (N[, d...])
    or class probabilities (same shape as logits).

    ``label_smoothing`` mixes the target with the uniform distribution, as in torch.
    A label outside [0, C) raises ValueError on the CPU; on the GPU it makes that sample's
    loss NaN instead (checking on the host would stall the GPU every step), and raises the
    same ValueError inside ``md.detect_anomaly()``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, "
                         f"got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return CrossEntropy(reduction, label_smoothing)(logits, target)


def nll_loss(log_probs: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer labels (N[, d...]) under ``log_probs`` (N, C[, d...])."""
    t = as_tensor(target, like=log_probs)
    if log_probs.ndim < 2:
        raise ValueError(f"nll_loss: input must be (N, C) or (N, C, d...), got {log_probs.shape}")
    bad = _check_targets("nll_loss", log_probs.data, t.data)
    xp = get_array_module(log_probs.data)
    picked = sum(log_probs * Tensor(_one_hot(xp, t.data, log_probs.shape[1], log_probs.dtype)),
                 axis=1)
    if bad is not None:  # GPU: out-of-range labels give NaN (see _check_targets)
        picked = picked + Tensor(_poison(xp, xp.zeros(bad.shape, log_probs.dtype), bad))
    return _reduce(-picked, reduction, "nll_loss")


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error; ``input`` and ``target`` must have the same shape."""
    t = as_tensor(target, like=input)
    _check_same_shape("mse_loss", input, t)
    diff = input - t
    return _reduce(diff * diff, reduction, "mse_loss")


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                         reduction: str = "mean") -> Tensor:
    """BCE between probabilities ``input`` in [0, 1] and targets of the same shape.

    Logs are clamped at -100, as torch does, so p = 0 or 1 gives a finite loss.
    """
    t = as_tensor(target, like=input)
    _check_same_shape("binary_cross_entropy", input, t)
    loss = -(t * clip(log(input), min=-100.0) + (1 - t) * clip(log(1 - input), min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


class BCEWithLogits(Function):
    """max(x, 0) - x*t + log(1 + exp(-|x|)): BCE on logits without overflow."""

    keep_inputs = (0, 1)

    def forward(self, x, t):
        xp = get_array_module(x)
        return xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-abs(x)))

    def backward(self, gy):
        x, t = self.inputs
        gx = gy * (sigmoid(x) - t) if self.needs_input_grad[0] else None
        gt = -gy * x if self.needs_input_grad[1] else None
        return gx, gt


def binary_cross_entropy_with_logits(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                                     reduction: str = "mean") -> Tensor:
    """Sigmoid + BCE fused and numerically stable; ``target`` has the shape of ``input``."""
    t = as_tensor(target, like=input)
    _check_same_shape("binary_cross_entropy_with_logits", input, t)
    loss = BCEWithLogits()(input, t)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")



