"""The one table of loss names: ``get_loss(name)`` -> ``loss(output, target) -> scalar Tensor``.

Every name has one meaning, whoever asks (``Trainer(loss=...)``, ``keras`` ``compile(loss=...)``):

* torch's names take what ``torch.nn.functional`` takes. ``'cross_entropy'`` (``'ce'``):
  logits (N, C, ...) and class indices (N, ...) or probability rows; ``'nll'``
  (``'nll_loss'``): log-probabilities; ``'bce'``: probabilities; ``'bce_with_logits'``:
  logits; ``'mse_loss'``: output and target of the same shape.
* Keras' names take what Keras takes with ``from_logits=False``: **probabilities**, so the
  model ends with ``Softmax`` / ``Sigmoid``. ``'sparse_categorical_crossentropy'``: class
  indices (N,) (or (N, 1)); ``'categorical_crossentropy'``: one-hot or soft targets (N, C);
  ``'binary_crossentropy'``: 0/1 targets. Probabilities are clipped to [1e-7, 1 - 1e-7]
  before the log, as Keras does. ``'mse'`` (``'mean_squared_error'``) and ``'mae'``
  (``'mean_absolute_error'``) accept a target with as many elements as the output ((N,)
  for an (N, 1) output), as Keras does. For logits use the torch names (or, from Python,
  the functions below with ``from_logits=True``, as ``keras.losses`` does). ``'huber'`` and
  ``'kl_divergence'`` (``'kld'``) are Keras's too; Keras's hinge loss is the function
  :func:`hinge` (``keras.losses.Hinge()``), not a name of this table.

    >>> import minidl as md
    >>> p = md.tensor([[0.7, 0.2, 0.1]])
    >>> round(get_loss("sparse_categorical_crossentropy")(p, md.tensor([0])).item(), 4)
    0.3567
    >>> round(get_loss("cross_entropy")(p, md.tensor([0])).item(), 4)  # p taken as logits
    0.7679
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, tensor

__all__ = ["get_loss", "loss_names", "sparse_categorical_crossentropy",
           "categorical_crossentropy", "binary_crossentropy", "mean_squared_error",
           "mean_absolute_error", "huber", "kl_divergence", "hinge"]

_EPS = 1e-7  # Keras' backend epsilon


def _like_output(output: Tensor, target: Any) -> Tensor:
    """``target`` as a Tensor on the output's device in the output's dtype (Keras casts
    y_true to y_pred's dtype: integer and bool targets work), reshaped to the output's shape
    when it has as many elements (Keras accepts y (N,) for predictions (N, 1))."""
    t = target if isinstance(target, Tensor) else tensor(target, device=output.device)
    if t.dtype != output.dtype:
        t = t.astype(output.dtype)
    if t.shape != output.shape and t.size == output.size:
        t = t.reshape(output.shape)
    return t


def _keras_log_probs(output: Tensor, from_logits: bool) -> Tensor:
    """Keras's log-probabilities along the last axis: ``log_softmax`` of logits, or of
    probabilities rescaled to sum to 1 and clipped to [1e-7, 1 - 1e-7]."""
    if from_logits:
        return F.log_softmax(output, axis=-1)
    p = output / F.sum(output, axis=-1, keepdims=True)
    return F.log(F.clip(p, _EPS, 1.0 - _EPS))


def sparse_categorical_crossentropy(output: Tensor, target: Any,
                                    from_logits: bool = False) -> Tensor:
    """Keras's loss on probabilities (..., C) (logits with ``from_logits=True``), the class
    axis last, and class indices (...) (a trailing size-1 axis is squeezed, as Keras does):
    (N, C) with (N,) or (N, 1); (N, T, C) with (N, T); (N, H, W, C) with (N, H, W). The mean
    over every labelled position."""
    t = target if isinstance(target, Tensor) else tensor(target, device=output.device)
    if t.ndim == output.ndim and t.ndim and t.shape[-1] == 1:
        t = t.reshape(t.shape[:-1])
    if output.ndim < 1 or t.shape != output.shape[:-1]:
        raise ValueError(f"sparse_categorical_crossentropy: probabilities {tuple(output.shape)} "
                         f"(classes on the last axis, as in Keras) need class indices of shape "
                         f"{tuple(output.shape[:-1])}, got {tuple(t.shape)}; one-hot targets "
                         f"need 'categorical_crossentropy'")
    if t.dtype.kind != "i":  # Keras takes float (and unsigned) labels too
        t = t.astype(np.int64)
    classes = output.shape[-1]
    logp = _keras_log_probs(output, from_logits).reshape((-1, classes))
    return F.nll_loss(logp, t.reshape((-1,)))


def categorical_crossentropy(output: Tensor, target: Any, from_logits: bool = False) -> Tensor:
    """Keras's loss on probabilities (..., C) (logits with ``from_logits=True``), the class
    axis last, and one-hot or soft targets of that shape: ``-sum(t * log(p))`` over the last
    axis after rescaling ``p`` to sum to 1 there (as Keras does), averaged over the rest."""
    t = _like_output(output, target)
    return -F.mean(F.sum(t * _keras_log_probs(output, from_logits), axis=-1))


def binary_crossentropy(output: Tensor, target: Any, from_logits: bool = False) -> Tensor:
    """Keras's loss on probabilities (logits with ``from_logits=True``) and 0/1 (or soft)
    targets with as many elements."""
    t = _like_output(output, target)
    if from_logits:
        return F.binary_cross_entropy_with_logits(output, t)
    return F.binary_cross_entropy(F.clip(output, _EPS, 1.0 - _EPS), t)


def mean_squared_error(output: Tensor, target: Any) -> Tensor:
    """Mean of ``(output - target)**2`` over all elements."""
    return F.mse_loss(output, _like_output(output, target))


def mean_absolute_error(output: Tensor, target: Any) -> Tensor:
    """Mean of ``|output - target|`` over all elements."""
    return F.mean(F.abs(output - _like_output(output, target)))


def huber(output: Tensor, target: Any, delta: float = 1.0) -> Tensor:
    """Keras's Huber loss: ``0.5 d^2`` where ``|d| <= delta``, else ``delta (|d| - delta/2)``,
    averaged over all elements (d = output - target)."""
    d = F.abs(output - _like_output(output, target))
    return F.mean(F.where(d.data <= delta, d * d * 0.5, (d - 0.5 * delta) * delta))


def kl_divergence(output: Tensor, target: Any) -> Tensor:
    """Keras's KL divergence of the target distribution from the output one: per sample
    ``sum(t log(t / p))`` over the last axis (both clipped to [1e-7, 1]), batch mean."""
    t = F.clip(_like_output(output, target), _EPS, 1.0)
    p = F.clip(output, _EPS, 1.0)
    per = F.sum(t * F.log(t / p), axis=-1)
    return F.mean(per)


def hinge(output: Tensor, target: Any) -> Tensor:
    """Keras's hinge loss ``mean(max(1 - t * output, 0))``; 0/1 targets become -1/1 first."""
    t = _like_output(output, target)
    xp_t = t.data
    if ((xp_t == 0) | (xp_t == 1)).all():
        t = t * 2.0 - 1.0
    return F.mean(F.relu(1.0 - t * output))


_LOSSES: dict[str, Callable[[Any, Any], Tensor]] = {
    # torch's names and meanings
    "cross_entropy": F.cross_entropy, "ce": F.cross_entropy,
    "nll": F.nll_loss, "nll_loss": F.nll_loss,
    "mse_loss": F.mse_loss,
    "bce": F.binary_cross_entropy,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
    # Keras' names and meanings (probabilities, lenient target shapes)
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "binary_crossentropy": binary_crossentropy,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
    "huber": huber, "kl_divergence": kl_divergence, "kld": kl_divergence,
}


def loss_names() -> list[str]:
    """Every name :func:`get_loss` knows, sorted."""
    return sorted(_LOSSES)


def get_loss(spec: str | Callable[[Any, Any], Tensor]) -> Callable[[Any, Any], Tensor]:
    """A loss callable ``loss(output, target) -> scalar Tensor`` from a name (see the module
    docstring for what each expects) or a callable, returned as is."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec.lower() not in _LOSSES:
        raise ValueError(f"unknown loss {spec!r}; expected a callable or one of "
                         f"{loss_names()}")
    return _LOSSES[spec.lower()]
