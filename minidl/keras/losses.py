"""Keras's losses, in Keras's argument order ``loss(y_true, y_pred)``.

Classes -- ``MeanSquaredError()``, ``MeanAbsoluteError()``, ``BinaryCrossentropy(from_logits=
False)``, ``CategoricalCrossentropy(from_logits=False)``, ``SparseCategoricalCrossentropy(
from_logits=False)``, ``Huber(delta=1.0)``, ``KLDivergence()``, ``Hinge()`` -- and the
functions of the same names (``mse``, ``sparse_categorical_crossentropy``, ...). All compute
the formulas of :mod:`minidl.train.losses`, the one table of loss names (so ``loss="mse"``
and ``loss=keras.losses.MeanSquaredError()`` are the same loss). Without ``from_logits``
the cross-entropies take probabilities, with the class axis last, as in Keras; targets are
cast to the prediction's dtype (sparse labels stay integers).

The functions return the batch mean (Keras's return per-sample values, whose mean this is,
so a custom loss built from them trains the same).

    >>> import minidl as md
    >>> y_true, y_pred = md.tensor([0]), md.tensor([[2.0, 1.0, 0.1]])
    >>> round(SparseCategoricalCrossentropy(from_logits=True)(y_true, y_pred).item(), 4)
    0.417
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..autograd import Tensor
from ..train import losses as table

__all__ = ["Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "Huber", "KLDivergence",
           "Hinge", "mean_squared_error", "mse", "mean_absolute_error", "mae",
           "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
           "huber", "kl_divergence", "kld", "hinge", "get"]


class Loss:
    """Base class: ``loss(y_true, y_pred) -> scalar Tensor``. ``reduction`` is Keras's
    'sum_over_batch_size' (the mean over samples, the default) or 'sum' (per-sample losses
    added up)."""

    name = "loss"

    def __init__(self, reduction: str = "sum_over_batch_size", name: str | None = None) -> None:
        if reduction not in ("sum_over_batch_size", "sum", "auto", None):
            raise ValueError(f"{type(self).__name__}: reduction={reduction!r} is not supported; "
                             f"use 'sum_over_batch_size' (the default) or 'sum'")
        self.reduction = reduction or "sum_over_batch_size"
        if name is not None:
            self.name = name

    def _mean(self, y_true: Any, y_pred: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Tensor, sample_weight: Any = None) -> Tensor:
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}: sample_weight is not supported by minidl")
        value = self._mean(y_true, y_pred)
        return value * float(y_pred.shape[0]) if self.reduction == "sum" else value

    def as_minidl(self) -> Callable[[Any, Any], Tensor]:
        """This loss in minidl's order ``(output, target)``, for the Trainer."""
        return lambda output, target: self(target, output)


def _class(cls_name: str, keras_name: str, fn: Callable[..., Tensor], doc: str,
           **params: Any) -> type:
    """A Loss class calling ``fn(y_pred, y_true, **params)``."""

    def __init__(self: Any, *args: Any, reduction: str = "sum_over_batch_size",  # noqa: N807
                 name: str | None = None, **kwargs: Any) -> None:
        values = dict(params)
        for key, value in zip(params, args):
            values[key] = value
        bad = set(kwargs) - set(params)
        if bad or len(args) > len(params):
            raise TypeError(f"{cls_name}: unexpected argument(s) {sorted(bad) or args}")
        values.update(kwargs)
        self.params = values
        Loss.__init__(self, reduction, name)

    def _mean(self: Any, y_true: Any, y_pred: Tensor) -> Tensor:
        return fn(y_pred, y_true, **self.params)

    return type(cls_name, (Loss,), {"__init__": __init__, "_mean": _mean, "name": keras_name,
                                    "__doc__": doc})


MeanSquaredError = _class("MeanSquaredError", "mean_squared_error", table.mean_squared_error,
                          "mean((y_pred - y_true)**2).")
MeanAbsoluteError = _class("MeanAbsoluteError", "mean_absolute_error",
                           table.mean_absolute_error, "mean(|y_pred - y_true|).")
BinaryCrossentropy = _class("BinaryCrossentropy", "binary_crossentropy",
                            table.binary_crossentropy,
                            "Binary cross-entropy of probabilities (logits with from_logits).",
                            from_logits=False)
CategoricalCrossentropy = _class("CategoricalCrossentropy", "categorical_crossentropy",
                                 table.categorical_crossentropy,
                                 "Cross-entropy with one-hot targets (N, C).", from_logits=False)
SparseCategoricalCrossentropy = _class(
    "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy",
    table.sparse_categorical_crossentropy, "Cross-entropy with class-index targets (N,).",
    from_logits=False)
Huber = _class("Huber", "huber", table.huber, "Huber loss with ``delta`` (1.0).", delta=1.0)
KLDivergence = _class("KLDivergence", "kl_divergence", table.kl_divergence,
                      "KL divergence of y_true from y_pred.")
Hinge = _class("Hinge", "hinge", table.hinge, "Hinge loss; 0/1 targets become -1/1.")


def _fn(fn: Callable[..., Tensor], name: str) -> Callable[..., Tensor]:
    def loss(y_true: Any, y_pred: Tensor, **kwargs: Any) -> Tensor:
        return fn(y_pred, y_true, **kwargs)
    loss.__name__ = loss.__qualname__ = name
    loss.__doc__ = f"Keras's ``{name}(y_true, y_pred)``: the batch mean of {fn.__name__}."
    return loss


mean_squared_error = mse = _fn(table.mean_squared_error, "mean_squared_error")
mean_absolute_error = mae = _fn(table.mean_absolute_error, "mean_absolute_error")
binary_crossentropy = _fn(table.binary_crossentropy, "binary_crossentropy")
categorical_crossentropy = _fn(table.categorical_crossentropy, "categorical_crossentropy")
sparse_categorical_crossentropy = _fn(table.sparse_categorical_crossentropy,
                                      "sparse_categorical_crossentropy")
huber = _fn(table.huber, "huber")
kl_divergence = kld = _fn(table.kl_divergence, "kl_divergence")
hinge = _fn(table.hinge, "hinge")


def _same_rank(y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
    """Keras's ``squeeze_or_expand_to_same_rank`` for ranks one apart with a trailing size-1
    axis: y (N,) against (N, 1) predictions becomes (N, 1); otherwise that axis is dropped."""
    for a, b, swap in ((y_true, y_pred, False), (y_pred, y_true, True)):
        if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
            if b.ndim == 1:
                b = b.reshape((-1, 1))
            else:
                a = a.reshape(a.shape[:-1])
            return (b, a) if swap else (a, b)
    return y_true, y_pred


def get(identifier: Any) -> Callable[[Any, Any], Tensor]:
    """A loss in minidl's order ``(output, target)`` for the Trainer, from a name of the one
    table, a :class:`Loss` instance or a function ``(y_true, y_pred)`` written as for Keras
    (as Keras's loss wrapper does: ``y_true`` cast to ``y_pred``'s dtype, a trailing size-1
    axis squeezed or added when the ranks differ by one, a non-scalar result averaged)."""
    if isinstance(identifier, str):
        return table.get_loss(identifier)
    if isinstance(identifier, Loss):
        return identifier.as_minidl()
    if callable(identifier):
        def loss(output: Any, target: Any) -> Tensor:
            if isinstance(target, Tensor) and isinstance(output, Tensor):
                if target.dtype != output.dtype:
                    target = target.astype(output.dtype)   # Keras casts y_true to a float
                target, output = _same_rank(target, output)
            value = identifier(target, output)
            return value.mean() if isinstance(value, Tensor) and value.size != 1 else value
        loss.__name__ = getattr(identifier, "__name__", "loss")
        return loss
    raise TypeError(f"loss must be a name, a keras.losses.Loss or a function (y_true, y_pred), "
                    f"got {type(identifier).__name__}")
