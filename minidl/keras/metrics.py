"""Keras's metrics by name and class, from the one table of :mod:`minidl.train.metrics`.

Names: 'accuracy'/'acc' (resolved as Keras does from the loss: sparse_categorical_accuracy
after a sparse cross-entropy, categorical_accuracy after a categorical one, binary_accuracy
after a binary one), 'sparse_categorical_accuracy', 'categorical_accuracy', 'binary_accuracy',
'mae'/'mean_absolute_error', 'mse'/'mean_squared_error', 'rmse'/'root_mean_squared_error',
'top_k_categorical_accuracy', 'sparse_top_k_categorical_accuracy'. Classes:
``SparseCategoricalAccuracy()``, ``CategoricalAccuracy()``, ``BinaryAccuracy(threshold=0.5)``,
``MeanAbsoluteError()``, ``MeanSquaredError()``, ``RootMeanSquaredError()``,
``TopKCategoricalAccuracy(k=5)``, ``SparseTopKCategoricalAccuracy(k=5)``. A metric function
is written as for Keras, ``fn(y_true, y_pred)``; its key in the history is its name.
"""
from __future__ import annotations

from typing import Any

from ..train import metrics as table

__all__ = ["SparseCategoricalAccuracy", "CategoricalAccuracy", "BinaryAccuracy",
           "MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Metric", "get"]

Metric = table.Metric


def SparseCategoricalAccuracy(name: str = "sparse_categorical_accuracy") -> Metric:  # noqa: N802
    """Argmax of the scores against class indices."""
    return table.SparseCategoricalAccuracy(name=name)


def CategoricalAccuracy(name: str = "categorical_accuracy") -> Metric:  # noqa: N802
    """Argmax of the scores against the argmax of one-hot targets."""
    return table.CategoricalAccuracy(name=name)


def BinaryAccuracy(name: str = "binary_accuracy", threshold: float = 0.5) -> Metric:  # noqa: N802
    """``y_pred > threshold`` against 0/1 targets, element by element."""
    return table.BinaryAccuracy(threshold, name=name)


def MeanAbsoluteError(name: str = "mean_absolute_error") -> Metric:  # noqa: N802
    """Mean of |y_pred - y_true|."""
    return table.MeanAbsoluteError(name=name)


def MeanSquaredError(name: str = "mean_squared_error") -> Metric:  # noqa: N802
    """Mean of (y_pred - y_true)**2."""
    return table.MeanSquaredError(name=name)


def RootMeanSquaredError(name: str = "root_mean_squared_error") -> Metric:  # noqa: N802
    """Square root of the mean squared error."""
    return table.RootMeanSquaredError(name=name)


def TopKCategoricalAccuracy(k: int = 5, name: str = "top_k_categorical_accuracy") -> Metric:  # noqa: N802
    """Whether the true class (argmax of one-hot targets) is among the k best scores."""
    return table.KerasTopKAccuracy(k, name=name)


def SparseTopKCategoricalAccuracy(k: int = 5,  # noqa: N802
                                  name: str = "sparse_top_k_categorical_accuracy") -> Metric:
    """Whether the true class index is among the k best scores."""
    return table.KerasTopKAccuracy(k, sparse=True, name=name)


class _ShapeAccuracy(Metric):
    """'accuracy' after any other loss, resolved as Keras 3 does from the shapes of the
    first batch: binary_accuracy for outputs (..., 1), sparse_categorical_accuracy for
    labels of lower rank (or a trailing size-1 axis), categorical_accuracy otherwise."""

    def reset(self) -> None:
        super().reset()
        self._metric: Metric | None = None

    def update(self, output: Any, target: Any) -> None:
        out, tgt = self.select(output, target)
        if self._metric is None:
            if out.shape[-1] == 1:
                cls: Any = table.BinaryAccuracy
            elif tgt.ndim < out.ndim or tgt.shape[-1] == 1:
                cls = table.SparseCategoricalAccuracy
            else:
                cls = table.CategoricalAccuracy
            self._metric = cls(name=self.name)
        self._metric.update(out, tgt)
        self.total, self.count = self._metric.total, self._metric.count


def get(spec: Any, loss: Any = None, output: int | None = None) -> Metric:
    """A fresh Metric for ``compile(metrics=[...])``: a name (keyed in the history by that
    name, as in Keras), a Metric, or a function ``(y_true, y_pred)``. ``loss`` is the
    output's loss spec, which decides what 'accuracy' means."""
    if isinstance(spec, str):
        key = spec.lower()
        if key in ("accuracy", "acc"):
            lname = loss if isinstance(loss, str) else getattr(loss, "name", "")
            kind = {"sparse_categorical_crossentropy": "sparse_categorical_accuracy",
                    "categorical_crossentropy": "categorical_accuracy",
                    "binary_crossentropy": "binary_accuracy"}.get(str(lname).lower())
            if kind is not None:
                return table.get_metric(kind, name=spec, output=output)
            return _ShapeAccuracy(name=spec, output=output)
        return table.get_metric(spec, name=spec, output=output)
    if isinstance(spec, table.Metric):
        return table.get_metric(spec, output=output) if output is not None else spec
    if callable(spec):
        def fn(out: Any, target: Any) -> Any:
            value = spec(target, out)
            return value.mean() if hasattr(value, "size") and value.size != 1 else value
        return table.FunctionMetric(fn, name=getattr(spec, "__name__", "metric"), output=output)
    raise TypeError(f"metric must be a name, a Metric or a function (y_true, y_pred), got "
                    f"{type(spec).__name__}")
