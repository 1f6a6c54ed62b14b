"""Loss functions, with torch.nn.functional's signatures, defaults and reductions."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..autograd import Function, Tensor, as_tensor, is_anomaly_enabled, is_grad_enabled
from ..backend import get_array_module
from .activation import log_softmax, sigmoid
from .elementwise import abs, clip, exp, log, where
from .reduction import mean, sum
from .shape import reshape, unsqueeze

_REDUCTIONS = ("mean", "sum", "none")


def legacy_reduction(op: str, size_average: Any, reduce: Any, reduction: str) -> str:
    """torch's ``reduction`` from its arguments, the deprecated ``size_average``/``reduce``
    included (mapped as torch maps them, with torch's warning)."""
    for name, value in (("size_average", size_average), ("reduce", reduce)):
        if isinstance(value, str):
            raise TypeError(f"{op}: got {value!r} for {name} (torch's argument order); pass "
                            f"reduction={value!r} by keyword")
    if size_average is not None or reduce is not None:
        keep = True if reduce is None else bool(reduce)
        average = True if size_average is None else bool(size_average)
        reduction = ("mean" if average else "sum") if keep else "none"
        warnings.warn(f"{op}: size_average and reduce are deprecated (as in torch); use "
                      f"reduction={reduction!r} instead", UserWarning, stacklevel=3)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    return sum(loss) if reduction == "sum" else loss


def _check_same_shape(op: str, x: Tensor, t: Tensor) -> None:
    if x.shape != t.shape:
        raise ValueError(f"{op}: input has shape {x.shape} but target has shape {t.shape}; "
                         f"reshape the target to {x.shape} (torch broadcasts the two with a "
                         f"warning; that is nearly always a bug)")


def _one_hot(xp: Any, target: Any, classes: int, dtype: Any) -> Any:
    """(N, d...) integer labels -> (N, C, d...) one-hot, by broadcasting (either backend).

    A label outside [0, C) (an ``ignore_index`` such as -100) gives a row of zeros.
    """
    ids = xp.arange(classes).reshape((1, classes) + (1,) * (target.ndim - 1))
    return (xp.expand_dims(target, 1) == ids).astype(dtype)


def _check_targets(op: str, logits: Any, target: Any, ignore_index: int) -> Any:
    """Check integer labels against (N, C, d...) logits; return None, or on the GPU a mask.

    Labels equal to ``ignore_index`` are exempt. On the CPU an out-of-range label raises
    ValueError. On the GPU, reading the label range back to the host would stall the device
    on every step, so the check is left to the GPU: the returned boolean mask (N, d...)
    marks the bad labels, and the caller makes their losses NaN (a NaN loss that
    detect_anomaly() traces; inside detect_anomaly(), which syncs anyway, the GPU raises the
    CPU's ValueError).
    """
    n, c = logits.shape[0], logits.shape[1]
    expected = (n,) + tuple(logits.shape[2:])
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype "
                        f"{target.dtype} (use target.long())")
    if tuple(target.shape) != expected:
        raise ValueError(f"{op}: input of shape {tuple(logits.shape)} needs an integer target of "
                         f"shape {expected}, got {tuple(target.shape)}")
    if not target.size:
        return None
    out = ((target < 0) | (target >= c)) & (target != ignore_index)
    if get_array_module(target) is not np and not is_anomaly_enabled():
        return out
    if out.any():
        used = target[target != ignore_index]
        raise ValueError(f"{op}: target labels must lie in [0, {c}) (or equal ignore_index="
                         f"{ignore_index}) for input of shape {tuple(logits.shape)}, got range "
                         f"[{int(used.min())}, {int(used.max())}]")
    return None


def _poison(xp: Any, losses: Any, bad: Any) -> Any:
    """Per-sample losses with NaN where ``bad`` (the GPU's out-of-range labels) is set."""
    # a NumPy scalar of the loss dtype goes to the kernel as an argument: no host-to-device copy
    return losses if bad is None else xp.where(bad, losses.dtype.type(np.nan), losses)


def _class_weight(op: str, weight: Any, x: Tensor) -> Any:
    """``weight`` (C,) as an array of x's dtype on x's device, or None."""
    if weight is None:
        return None
    w = as_tensor(weight, like=x).data
    classes = x.shape[1]
    if tuple(w.shape) != (classes,):
        raise ValueError(f"{op}: weight must have one entry per class, shape ({classes},) for "
                         f"input of shape {x.shape}, got {tuple(w.shape)}")
    return w.astype(x.dtype, copy=False)


def _batched(op: str, x: Tensor, t: Tensor, soft: bool) -> tuple[Tensor, Tensor, bool]:
    """Unbatched (C,) input with a scalar label (or (C,) probabilities) -> a batch of one."""
    if x.ndim == 1:
        if t.ndim != (1 if soft else 0):
            want = "a scalar label" + ("" if op == "nll_loss" else
                                       f" or class probabilities of shape {x.shape}")
            raise ValueError(f"{op}: unbatched input of shape {x.shape} needs {want}, "
                             f"got target of shape {t.shape}")
        return unsqueeze(x, 0), unsqueeze(t, 0), True
    if x.ndim < 2:
        raise ValueError(f"{op}: input must be (C,), (N, C) or (N, C, d...), got shape {x.shape}")
    return x, t, False


def _divide(a: Any, b: Any) -> Any:
    """a / b for a mean over weights: 0 / 0 (every target ignored) is NaN, as in torch."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


class CrossEntropy(Function):
    """log-softmax + NLL fused. With the target distribution ``q`` (one-hot labels or
    probabilities, smoothed, times the class weights, zero on ignored positions) the loss is
    ``-sum(q * log_softmax(x))`` and its gradient ``(softmax(x) * sum(q) - q) * scale``."""

    keep_inputs = (0, 1)

    def __init__(self, reduction: str, label_smoothing: float, weight: Any,
                 ignore_index: int) -> None:
        self.reduction, self.smoothing = reduction, label_smoothing
        self.weight, self.ignore_index = weight, ignore_index

    def _weights(self, ndim: int) -> Any:
        """The class weights shaped to broadcast over (N, C, d...), or None."""
        w = self.weight
        return None if w is None else w.reshape((1, w.shape[0]) + (1,) * (ndim - 2))

    def forward(self, logits, target):
        xp = get_array_module(logits)
        classes, s, w = logits.shape[1], self.smoothing, self._weights(logits.ndim)
        bad = None
        if target.dtype.kind in "iu":
            bad = _check_targets("cross_entropy", logits, target, self.ignore_index)
            hit = _one_hot(xp, target, classes, logits.dtype)
            valid = xp.expand_dims(target != self.ignore_index, 1).astype(logits.dtype)
            if 0 <= self.ignore_index < classes:  # else ignored rows of hit are zero already
                hit *= valid
            q = hit * (1 - s) + valid * (s / classes) if s else hit
            # 'mean' divides by the summed weight of the (non-ignored) targets, as torch does
            self.divisor = valid.sum() if w is None else (hit * w).sum()
            qsum = valid if w is None else None     # each row of q sums to 1 or (ignored) 0
        else:
            if tuple(target.shape) != tuple(logits.shape):
                raise ValueError(f"cross_entropy: a float target must have the input's shape "
                                 f"{tuple(logits.shape)}, got {tuple(target.shape)}")
            q, qsum = target.astype(logits.dtype), None
            if s:
                q = q * (1 - s) + s / classes
            self.divisor = logits.size // classes       # probability targets: per position
        if w is not None:
            q = q * w
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        if self.needs_input_grad[0]:
            # q need not sum to 1 (weights, ignored labels, unnormalised float targets)
            self.p, self.q = xp.exp(logp), q
            self.qsum = q.sum(axis=1, keepdims=True) if qsum is None else qsum
        if self.needs_input_grad[1]:
            self.logp = logp
        losses = _poison(xp, -(q * logp).sum(axis=1), bad)
        if self.reduction == "mean":
            return xp.asarray(_divide(losses.sum(), self.divisor), dtype=logits.dtype)
        if self.reduction == "sum":
            return xp.asarray(losses.sum())
        return losses

    def _scale(self, gy: Tensor) -> Tensor:
        if self.reduction == "mean":
            xp = get_array_module(gy.data)
            return gy / Tensor(xp.asarray(self.divisor, dtype=gy.dtype))
        return gy if self.reduction == "sum" else unsqueeze(gy, 1)

    def backward(self, gy):
        x, t = self.inputs
        s = self.smoothing
        w = self._weights(x.ndim)
        if is_grad_enabled():
            # create_graph: rebuild from the input tensors with ops, so that the gradient
            # differentiates again (w.r.t. the logits and a float target alike)
            logp = log_softmax(x, axis=1)
            p = exp(logp)
            if t.dtype.kind in "iu":
                q, qsum = Tensor(self.q), Tensor(self.qsum)
            else:
                q = t * (1 - s) + s / x.shape[1] if s else t
                q = q if w is None else q * Tensor(w)
                qsum = sum(q, axis=1, keepdims=True)
        else:
            logp = Tensor(self.logp) if self.needs_input_grad[1] else None
            if self.needs_input_grad[0]:
                p, q, qsum = Tensor(self.p), Tensor(self.q), Tensor(self.qsum)
        gx = gt = None
        scale = self._scale(gy)
        if self.needs_input_grad[0]:
            gx = (p * qsum - q) * scale
        if self.needs_input_grad[1]:
            gt = -logp * (1 - s) * scale
            gt = gt if w is None else gt * Tensor(w)
        return gx, gt


def cross_entropy(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    ``input``: logits (C,), (N, C) or (N, C, d...). ``target``: integer labels (), (N,) or
    (N, d...), or class probabilities of the input's shape. ``weight`` (C,) scales each
    class's term; ``ignore_index`` labels contribute nothing. ``label_smoothing`` mixes the
    target with the uniform distribution. With labels, 'mean' divides by the summed weight of
    the non-ignored targets (NaN when every target is ignored); with probabilities, by the
    number of positions. All as torch defines them:

        loss[n] = -sum_c w[c] * q[n, c] * log_softmax(input)[n, c]
        q = (1 - label_smoothing) * onehot(target) + label_smoothing / C  (0 where ignored)

    A label outside [0, C) that is not ``ignore_index`` raises ValueError on the CPU; on the
    GPU it makes that sample's loss NaN instead (checking on the host would stall the GPU
    every step), and raises the same ValueError inside ``md.detect_anomaly()``.

        >>> import minidl as md
        >>> x = md.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> y = md.tensor([0, 0, -100])
        >>> round(cross_entropy(x, y).item(), 4)   # the mean of the first two samples
        1.1269
    """
    op = "cross_entropy"
    if isinstance(weight, str):
        raise TypeError(f"{op}: the third argument is weight (torch's order); pass "
                        f"reduction={weight!r} by keyword")
    reduction = legacy_reduction(op, size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = as_tensor(target, like=input)
    soft = t.dtype.kind not in "iu"
    if soft and ignore_index >= 0:
        raise ValueError(f"{op}: ignore_index={ignore_index} needs integer labels; with class "
                         f"probabilities give ignored positions zero probability instead")
    x, t, unbatched = _batched(op, input, t, soft)
    loss = CrossEntropy(reduction, label_smoothing, _class_weight(op, weight, x),
                        ignore_index)(x, t)
    return reshape(loss, ()) if unbatched and reduction == "none" else loss


def nll_loss(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
             size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood, as ``torch.nn.functional.nll_loss``: ``loss[n] =
    -weight[y[n]] * input[n, y[n]]`` (0 where ``y[n] == ignore_index``).

    ``input``: log-probabilities (C,), (N, C) or (N, C, d...); ``target``: integer labels
    (), (N,) or (N, d...). 'mean' divides by the summed weight of the non-ignored targets.
    """
    op = "nll_loss"
    if isinstance(weight, str):
        raise TypeError(f"{op}: the third argument is weight (torch's order); pass "
                        f"reduction={weight!r} by keyword")
    reduction = legacy_reduction(op, size_average, reduce, reduction)
    x, t, unbatched = _batched(op, input, as_tensor(target, like=input), False)
    bad = _check_targets(op, x.data, t.data, ignore_index)
    xp = get_array_module(x.data)
    hit = _one_hot(xp, t.data, x.shape[1], x.dtype)
    hit *= xp.expand_dims(t.data != ignore_index, 1)
    w = _class_weight(op, weight, x)
    if w is not None:
        hit *= w.reshape((1, -1) + (1,) * (x.ndim - 2))
    loss = -sum(x * Tensor(hit), axis=1)
    if bad is not None:  # GPU: out-of-range labels give NaN (see _check_targets)
        loss = loss + Tensor(_poison(xp, xp.zeros(bad.shape, x.dtype), bad))
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            return sum(loss) / Tensor(hit.sum())
    if reduction == "sum":
        return sum(loss)
    return reshape(loss, ()) if unbatched else loss


def mse_loss(input: Tensor, target: Any, size_average: Any = None,  # noqa: A002
             reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)**2``; both of one shape."""
    reduction = legacy_reduction("mse_loss", size_average, reduce, reduction)
    t = as_tensor(target, like=input)
    _check_same_shape("mse_loss", input, t)
    diff = input - t
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Any, size_average: Any = None,  # noqa: A002
            reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|input - target|``; both of one shape (the gradient at 0 is 0)."""
    reduction = legacy_reduction("l1_loss", size_average, reduce, reduction)
    t = as_tensor(target, like=input)
    _check_same_shape("l1_loss", input, t)
    return _reduce(abs(input - t), reduction)


def _smooth_l1(op: str, input: Tensor, target: Any, beta: float) -> Tensor:  # noqa: A002
    """0.5 d**2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    t = as_tensor(target, like=input)
    _check_same_shape(op, input, t)
    d = input - t
    ad = abs(d)
    if beta == 0:
        return ad
    return where(ad.data < beta, d * d * (0.5 / beta), ad - 0.5 * beta)


def smooth_l1_loss(input: Tensor, target: Any, size_average: Any = None,  # noqa: A002
                   reduce: Any = None, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """torch's smooth L1: ``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 *
    beta``, with ``d = input - target`` (``beta = 0`` is the L1 loss)."""
    op = "smooth_l1_loss"
    reduction = legacy_reduction(op, size_average, reduce, reduction)
    if beta < 0:
        raise ValueError(f"{op}: beta must be >= 0, got {beta}")
    return _reduce(_smooth_l1(op, input, target, beta), reduction)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean",  # noqa: A002
               delta: float = 1.0) -> Tensor:
    """torch's Huber loss: ``0.5 * d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 *
    delta)`` (``delta`` times smooth L1 with ``beta = delta``)."""
    op = "huber_loss"
    reduction = legacy_reduction(op, None, None, reduction)
    if delta <= 0:
        raise ValueError(f"{op}: delta must be > 0, got {delta}")
    return _reduce(_smooth_l1(op, input, target, delta) * delta, reduction)


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Tensor:
    """BCE between probabilities ``input`` in [0, 1] and targets of the same shape, times
    ``weight`` (broadcast). Logs are clamped at -100, as torch does, so p = 0 or 1 gives a
    finite loss."""
    reduction = legacy_reduction("binary_cross_entropy", size_average, reduce, reduction)
    t = as_tensor(target, like=input)
    _check_same_shape("binary_cross_entropy", input, t)
    loss = -(t * clip(log(input), min=-100.0) + (1 - t) * clip(log(1 - input), min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


class BCEWithLogits(Function):
    """max(x, 0) - x*t + log(1 + exp(-|x|)): BCE on logits without overflow."""

    keep_inputs = (0, 1)

    def forward(self, x, t):
        xp = get_array_module(x)
        return xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        x, t = self.inputs
        gx = gy * (sigmoid(x) - t) if self.needs_input_grad[0] else None
        gt = -gy * x if self.needs_input_grad[1] else None
        return gx, gt


class Softplus(Function):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), which never overflows; gradient sigmoid(x)."""

    keep_inputs = (0,)

    def forward(self, x):
        xp = get_array_module(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        return gy * sigmoid(self.inputs[0])


def binary_cross_entropy_with_logits(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                                     size_average: Any = None, reduce: Any = None,
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """Sigmoid + BCE fused and numerically stable, as torch's; ``target`` has the shape of
    ``input``. ``weight`` multiplies each element's loss; ``pos_weight`` (broadcast along the
    last, class, dimension) multiplies the positive term:

        loss = -weight * (pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))
    """
    op = "binary_cross_entropy_with_logits"
    reduction = legacy_reduction(op, size_average, reduce, reduction)
    t = as_tensor(target, like=input)
    _check_same_shape(op, input, t)
    if pos_weight is None:
        loss = BCEWithLogits()(input, t)
    else:
        pw = as_tensor(pos_weight, like=input)
        # -log(1 - sigmoid(x)) = x + softplus(-x) and -log(sigmoid(x)) = softplus(-x)
        loss = (1 - t) * input + (1 + (pw - 1) * t) * Softplus()(-input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
