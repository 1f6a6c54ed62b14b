"""Metrics averaged over an epoch (accuracy, top-k, MAE, MSE, and Keras's
sparse_categorical_accuracy, categorical_accuracy, binary_accuracy, root_mean_squared_error,
the top-k ones), get_metric, and the same on plain arrays: accuracy, top_k_accuracy,
confusion_matrix, most_confused."""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import device_of, get_array_module, to_device, to_numpy

__all__ = ["Metric", "FunctionMetric", "Accuracy", "TopKAccuracy", "MeanAbsoluteError",
           "MeanSquaredError", "SparseCategoricalAccuracy", "CategoricalAccuracy",
           "BinaryAccuracy", "RootMeanSquaredError", "KerasTopKAccuracy", "get_metric",
           "accuracy", "top_k_accuracy", "confusion_matrix", "most_confused"]


def _first(x: Any) -> Any:
    """The first element of a tuple/list of outputs (multi-output models), else ``x``."""
    return x[0] if isinstance(x, (tuple, list)) else x


def _array(x: Any) -> Any:
    """The backend array of a Tensor (or the array itself)."""
    x = _first(x)
    return x.data if isinstance(x, Tensor) else x


class Metric:
    """A quantity averaged over an epoch: ``reset()``, ``update(output, target)``, ``compute()``.

    ``update`` receives the model output and the target as the Trainer has them (Tensors,
    or tuples of Tensors for several outputs/targets); :meth:`select` turns them into the
    backend arrays (NumPy or CuPy) of output number ``output`` (default: the first). It must
    not read values back to the host: keep running sums as device arrays and let
    ``compute()`` (called once per epoch or log interval) do the one transfer. ``name`` is
    the key in logs and history (validation adds a ``val_`` prefix).
    """

    name = "metric"

    def __init__(self, *, name: str | None = None, output: int | None = None) -> None:
        if name is not None:
            self.name = name
        self.output = output
        self.reset()

    def select(self, output: Any, target: Any) -> tuple[Any, Any]:
        """The backend arrays of the output and target this metric watches."""
        output, target = self._watched(output, target)
        return _array(output), _array(target)

    def _watched(self, output: Any, target: Any) -> tuple[Any, Any]:
        """The output and target this metric watches, as given (Tensors or arrays): number
        ``output`` of several (the first when ``output`` is None), with its target when
        there are several targets."""
        if self.output is not None:
            if not isinstance(output, (tuple, list)) or self.output >= len(output):
                raise ValueError(f"{self.name}: output={self.output} asked for, but the model "
                                 f"gave {len(output) if isinstance(output, (tuple, list)) else 1}"
                                 f" output(s)")
            output = output[self.output]
            if isinstance(target, (tuple, list)):
                target = target[self.output]
        return _first(output), _first(target)

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.total: Any = 0.0
        self.count = 0

    def update(self, output: Any, target: Any) -> None:
        """Add one batch: ``output`` (N, ...) and ``target`` (N, ...)."""
        raise NotImplementedError

    def compute(self) -> float:
        """The average over everything seen since ``reset()`` (NaN when nothing was seen)."""
        if self.count == 0:
            return float("nan")
        return float(to_numpy(self.total)) / self.count

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FunctionMetric(Metric):
    """A metric from a function ``fn(output, target) -> number`` (a batch mean), averaged
    over samples. ``fn`` gets Tensors; returning a 0-d Tensor or array keeps the sum on the
    device, returning a Python float costs a host sync per batch.
    """

    def __init__(self, fn: Callable[[Any, Any], Any], name: str | None = None,
                 output: int | None = None) -> None:
        self.fn = fn
        super().__init__(name=name or getattr(fn, "__name__", "metric"), output=output)

    def update(self, output: Any, target: Any) -> None:
        output, target = self._watched(output, target)
        value = self.fn(output, target)
        value = value.data if isinstance(value, Tensor) else value
        n = sample_count(target, (output,))
        self.total = self.total + value * n
        self.count += n


class Accuracy(Metric):
    """Fraction of correctly classified samples.

    Outputs (N, C) with C >= 2 are scores (logits or probabilities): the prediction is the
    argmax. Outputs (N,) or (N, 1) are binary: the prediction is ``output > threshold``
    (default 0.5, for probabilities; use 0.0 for logits). Targets are class indices (N,) or
    one-hot / probability rows (N, C), whose argmax is the class.
    """

    name = "accuracy"

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        self.threshold = threshold
        super().__init__(**kwargs)

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        if output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1):
            pred = (output.reshape(-1) > self.threshold).astype(np.int64)
            target = target.reshape(-1)
        else:
            pred = output.argmax(axis=1)
            if target.ndim == output.ndim and target.shape == output.shape:
                target = target.argmax(axis=1)  # one-hot / soft targets
        if pred.shape != target.shape:
            raise ValueError(f"accuracy: predictions have shape {tuple(pred.shape)} (from "
                             f"output {tuple(output.shape)}) but target has shape "
                             f"{tuple(target.shape)}")
        self.total = self.total + xp.count_nonzero(pred == target.astype(pred.dtype))
        self.count += int(pred.size)


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the ``k`` highest scores of (N, C) outputs.

    With fewer than ``k`` classes every sample counts as correct (as in torch/keras).
    """

    def __init__(self, k: int = 5, **kwargs: Any) -> None:
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k = int(k)
        self.name = f"top{k}"
        super().__init__(**kwargs)

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        if output.ndim != 2:
            raise ValueError(f"{self.name}: output must be (N, C) scores, got shape "
                             f"{tuple(output.shape)}")
        if target.ndim == 2:
            target = target.argmax(axis=1)
        n, c = output.shape
        if target.shape != (n,):
            raise ValueError(f"{self.name}: target must be (N,) = ({n},) class indices, got "
                             f"shape {tuple(target.shape)}")
        if self.k >= c:
            hits: Any = n
        else:
            # The true class is in the top k iff fewer than k scores beat it.
            true_score = xp.take_along_axis(output, target.astype(np.int64)[:, None], axis=1)
            hits = xp.count_nonzero((output > true_score).sum(axis=1) < self.k)
        self.total = self.total + hits
        self.count += n


class MeanAbsoluteError(Metric):
    """Mean of ``|output - target|`` over all elements."""

    name = "mae"

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        diff = output - target.reshape(output.shape).astype(output.dtype)
        self.total = self.total + xp.abs(diff).sum(dtype=np.float64)
        self.count += int(output.size)


class MeanSquaredError(Metric):
    """Mean of ``(output - target)**2`` over all elements."""

    name = "mse"

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        diff = output - target.reshape(output.shape).astype(output.dtype)
        self.total = self.total + (diff * diff).sum(dtype=np.float64)
        self.count += int(output.size)


class SparseCategoricalAccuracy(Metric):
    """Keras's sparse_categorical_accuracy: argmax of (N, C) scores against class indices
    (N,) or (N, 1)."""

    name = "sparse_categorical_accuracy"

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        pred = output.argmax(axis=-1).reshape(-1)
        target = target.reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"{self.name}: {pred.size} predictions (output "
                             f"{tuple(output.shape)}) but {target.size} labels")
        self.total = self.total + xp.count_nonzero(pred == target.astype(pred.dtype))
        self.count += int(pred.size)


class CategoricalAccuracy(Metric):
    """Keras's categorical_accuracy: argmax of (N, C) scores against argmax of one-hot
    (or soft) targets (N, C)."""

    name = "categorical_accuracy"

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        if target.shape != output.shape:
            raise ValueError(f"{self.name}: targets must be one-hot like the output "
                             f"{tuple(output.shape)}, got {tuple(target.shape)} (class indices "
                             f"need sparse_categorical_accuracy)")
        hits = output.argmax(axis=-1) == target.argmax(axis=-1)
        self.total = self.total + xp.count_nonzero(hits)
        self.count += int(hits.size)


class BinaryAccuracy(Metric):
    """Keras's binary_accuracy: the fraction of elements where ``output > threshold``
    matches the 0/1 target (every element counts: multi-label outputs too)."""

    name = "binary_accuracy"

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        self.threshold = threshold
        super().__init__(**kwargs)

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        if target.size != output.size:
            raise ValueError(f"{self.name}: target {tuple(target.shape)} and output "
                             f"{tuple(output.shape)} differ in size")
        pred = output.reshape(-1) > self.threshold
        hits = pred == (target.reshape(-1) > 0.5)
        self.total = self.total + xp.count_nonzero(hits)
        self.count += int(hits.size)


class KerasTopKAccuracy(Metric):
    """Keras's top_k_categorical_accuracy (one-hot targets (..., C)) and, with
    ``sparse=True``, sparse_top_k_categorical_accuracy (class indices (...), a trailing
    size-1 axis squeezed): whether the true class is among the ``k`` best scores of the
    last axis, at every position."""

    def __init__(self, k: int = 5, sparse: bool = False, **kwargs: Any) -> None:
        if k < 1:
            raise ValueError(f"top_k_categorical_accuracy: k must be >= 1, got {k}")
        self.k, self.sparse = int(k), sparse
        self.name = ("sparse_" if sparse else "") + "top_k_categorical_accuracy"
        super().__init__(**kwargs)

    def update(self, output: Any, target: Any) -> None:
        output, target = self.select(output, target)
        xp = get_array_module(output)
        c = output.shape[-1]
        if not self.sparse:
            target = target.argmax(axis=-1)
        elif target.ndim == output.ndim and target.shape[-1] == 1:
            target = target.reshape(target.shape[:-1])
        if tuple(target.shape) != tuple(output.shape[:-1]):
            raise ValueError(f"{self.name}: scores {tuple(output.shape)} need "
                             f"{'labels' if self.sparse else 'one-hot targets'} for "
                             f"{tuple(output.shape[:-1])} positions, got {tuple(target.shape)}")
        scores = output.reshape(-1, c)
        true_score = xp.take_along_axis(scores, target.reshape(-1, 1).astype(np.int64), axis=1)
        # the true class is in the top k iff fewer than k scores beat it
        hits = xp.count_nonzero((scores > true_score).sum(axis=1) < self.k)
        self.total = self.total + hits
        self.count += int(scores.shape[0])


class RootMeanSquaredError(MeanSquaredError):
    """Square root of the mean of ``(output - target)**2`` over everything seen."""

    name = "root_mean_squared_error"

    def compute(self) -> float:
        return float(np.sqrt(super().compute()))


def get_metric(spec: str | Metric | Callable[[Any, Any], Any], *, name: str | None = None,
               output: int | None = None) -> Metric:
    """A fresh Metric from a name: 'accuracy' ('acc'), 'topK' (e.g. 'top5'), 'mae'
    ('mean_absolute_error'), 'mse' ('mean_squared_error').

    A function ``fn(output, target)`` becomes a :class:`FunctionMetric`. A Metric instance
    is returned as is, or as a copy when ``name`` or ``output`` are given. ``name`` renames
    the metric (its key in logs); ``output`` picks one output of a multi-output model.
    """
    kwargs = {k: v for k, v in (("name", name), ("output", output)) if v is not None}
    if isinstance(spec, Metric):
        if not kwargs:
            return spec
        metric = copy.deepcopy(spec)
        for k, v in kwargs.items():
            setattr(metric, k, v)
        metric.reset()
        return metric
    if callable(spec):
        return FunctionMetric(spec, **kwargs)
    if not isinstance(spec, str):
        raise TypeError(f"metric must be a name or a Metric, got {spec!r}")
    key = spec.lower()
    if key in ("accuracy", "acc"):
        return Accuracy(**kwargs)
    if key.startswith("top") and key[3:].isdigit():
        return TopKAccuracy(int(key[3:]), **kwargs)
    if key in ("mae", "mean_absolute_error"):
        return MeanAbsoluteError(**kwargs)
    if key in ("mse", "mean_squared_error"):
        return MeanSquaredError(**kwargs)
    if key in _KERAS_METRICS:
        return _KERAS_METRICS[key](**kwargs)
    raise ValueError(f"unknown metric {spec!r}; expected 'accuracy', 'top5' (any topK), "
                     f"'mae', 'mse', one of {sorted(_KERAS_METRICS)} or a "
                     f"minidl.train.Metric")


# Keras's metric names (what keras compile(metrics=[...]) also resolves through get_metric)
_KERAS_METRICS: dict[str, Callable[..., Metric]] = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy, "binary_accuracy": BinaryAccuracy,
    "rmse": RootMeanSquaredError, "root_mean_squared_error": RootMeanSquaredError,
    "top_k_categorical_accuracy": lambda **kw: KerasTopKAccuracy(5, **kw),
    "sparse_top_k_categorical_accuracy": lambda **kw: KerasTopKAccuracy(5, sparse=True, **kw),
}


def _same_device(output: Any, target: Any) -> tuple[Any, Any]:
    """The arrays of ``output`` and ``target``, the target moved to the output's device:
    host labels are the common case, and CuPy refuses to compare with a NumPy array."""
    out, tgt = _array(output), _array(target)
    return out, to_device(tgt, device_of(out))


def accuracy(output: Any, target: Any) -> float:
    """Accuracy of (N, C) scores (argmax) or (N,) binary probabilities against labels (N,)."""
    m = Accuracy()
    m.update(*_same_device(output, target))
    return m.compute()


def top_k_accuracy(output: Any, target: Any, k: int = 5) -> float:
    """Fraction of rows of (N, C) ``output`` whose label (N,) is among the k highest scores."""
    m = TopKAccuracy(k)
    m.update(*_same_device(output, target))
    return m.compute()


def confusion_matrix(target: Any, pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts (C, C) int64: row = true class, column = predicted class.

    ``pred`` may be class indices (N,) or scores (N, C) (argmax is taken).
    """
    t = to_numpy(_array(target)).reshape(-1).astype(np.int64)
    p = to_numpy(_array(pred))
    p = (p.argmax(axis=1) if p.ndim == 2 else p.reshape(-1)).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: target has {t.size} labels but pred has {p.size}")
    c = int(num_classes) if num_classes is not None else int(max(t.max(initial=-1),
                                                                 p.max(initial=-1)) + 1)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def most_confused(cm: np.ndarray, top: int = 3) -> list[tuple[int, int, int]]:
    """The ``top`` most frequent mistakes of a confusion matrix as (true, predicted, count),
    largest first (only pairs with at least one mistake)."""
    off = np.array(cm, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [(int(i // off.shape[1]), int(i % off.shape[1])) for i in order]
    return [(a, b, int(off[a, b])) for a, b in pairs if off[a, b] > 0]


def sample_count(target: Any, inputs: Sequence[Any]) -> int:
    """The batch size: the leading dimension of the (first) target, else of the first input."""
    ref = _first(target) if target is not None else inputs[0]
    shape = getattr(ref, "shape", None)
    return int(shape[0]) if shape else 1
