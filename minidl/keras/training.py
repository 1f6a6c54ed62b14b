"""Keras' compile / fit / evaluate / predict, run by the one training loop (minidl.train.Trainer).

``compile`` turns Keras' arguments into what the Trainer takes: one loss per output, by name
from :mod:`minidl.train.losses` (the one table, Keras' names with Keras' meaning), summed
with ``loss_weights``; an optimiser (a name gets Keras' default learning rate); metrics from
:mod:`minidl.train.metrics`, one set per output. ``fit`` / ``evaluate`` / ``predict`` take
arrays (NumPy or CuPy, one per input and per output, or a dict by ``Input`` name), wrap them in
DataLoaders and hand them to a :class:`~minidl.train.Trainer`, so Keras-style training gets
the Trainer's NaN checks, host-sync policy, callbacks and :class:`~minidl.train.History`.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import optim
from ..autograd import Tensor
from ..backend import rng, to_numpy
from ..data import DataLoader
from ..nn import GraphModule
from ..train import Callback, FunctionMetric, History, Metric, Trainer, get_loss, get_metric

__all__ = ["TrainingMixin"]

# Keras' default learning rates by optimizer name (minidl.optim.get_optimizer builds them).
_KERAS_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3, "rmsprop": 1e-3,
             "adagrad": 1e-3}


class _Compiled:
    """What ``compile`` chose: one loss and weight per output, the optimiser, the metrics."""

    def __init__(self, losses: list[Callable[[Any, Any], Tensor]], weights: list[float],
                 optimizer: Any) -> None:
        self.losses, self.weights, self.optimizer = losses, weights, optimizer
        self.metrics: list[Metric] = []
        # Each output's loss from the last call of `loss`, with (a weak reference to) the
        # target it was computed for, so the per-output loss metrics need not recompute it.
        self._parts: list[tuple[weakref.ref, Tensor]] = []

    def loss(self, outputs: Any, targets: Any) -> Tensor:
        """The weighted sum of the per-output losses (the Trainer adds regularisation)."""
        outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        tgts = targets if isinstance(targets, (list, tuple)) else [targets]
        total: Any = 0.0
        parts = []
        for fn, w, out, tgt in zip(self.losses, self.weights, outs, tgts):
            value = fn(out, tgt)
            parts.append((weakref.ref(tgt), value.detach()))
            total = total + value * w
        self._parts = parts
        return total

    def output_loss(self, i: int, output: Any, target: Tensor) -> Tensor:
        """Output ``i``'s loss (0-d) on the batch whose target is ``target``, as :meth:`loss`
        has just computed it: the Trainer calls the loss before the metrics, on the very
        same target Tensors. ``output`` (what a FunctionMetric passes) is not needed."""
        if i >= len(self._parts) or self._parts[i][0]() is not target:
            raise RuntimeError(f"keras: the loss of output {i} was asked for a batch the "
                               "compiled loss has not seen")
        return self._parts[i][1]


class TrainingMixin:
    """Keras' training methods, for :class:`minidl.keras.Model` and
    :class:`minidl.keras.Sequential` (mixed into a Module)."""

    def compile(self, loss: Any, optimizer: Any = "rmsprop", loss_weights: Any = None,
                metrics: Any = None) -> None:
        """Configure training, as Keras does.

        loss: a name of :mod:`minidl.train.losses` -- Keras' 'mse', 'mae',
        'binary_crossentropy', 'categorical_crossentropy', 'sparse_categorical_crossentropy'
        (the cross-entropies take probabilities, as in Keras) or torch's 'cross_entropy',
        'bce_with_logits' (logits), ... --, a callable ``(output, target) -> Tensor``, or a
        list with one per output. loss_weights: one float per output.
        optimizer: a ``minidl.optim`` optimiser or a name ('sgd', 'adam', 'adamw', 'nadam',
        'rmsprop', 'adagrad', with Keras' default learning rates).
        metrics: names ('accuracy', 'top5', 'mae', 'mse'), :class:`minidl.train.Metric`
        objects or functions ``(output, target) -> Tensor`` (on Tensors), for every output.
        """
        names = _output_names(self)
        n = len(names)
        losses = list(loss) if isinstance(loss, (list, tuple)) else [loss] * n
        if len(losses) != n:
            raise ValueError(f"compile: {len(losses)} losses for {n} outputs")
        weights = [1.0] * n if loss_weights is None else [float(w) for w in loss_weights]
        if len(weights) != n:
            raise ValueError(f"compile: {len(weights)} loss_weights for {n} outputs")
        c = _Compiled([get_loss(x) for x in losses], weights, _make_optimizer(optimizer, self))
        # Keras' order of the figures: the loss, each output's loss, then each output's metrics.
        if n > 1:
            c.metrics = [FunctionMetric(functools.partial(c.output_loss, i),
                                        name=f"{name}_loss", output=i)
                         for i, name in enumerate(names)]
        for i, name in enumerate(names):
            for spec in metrics or []:
                if n == 1:
                    c.metrics.append(get_metric(spec))
                else:
                    m = get_metric(spec, output=i)
                    m.name = f"{name}_{m.name}"
                    c.metrics.append(m)
        self._compiled = c

    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple | None = None, shuffle: bool = True, verbose: int = 1,
            validation_split: float = 0.0, callbacks: Sequence[Callback] = ()) -> History:
        """Train for ``epochs`` epochs on array data; returns the :class:`History` of this call
        (also kept as ``model.history``).

        x: an array (N, ...) or a list with one per input (or a dict by Input name); y: one
        per output. ``validation_split`` holds out the last fraction of the samples (before
        any shuffling), as Keras does; ``validation_data`` ``(x, y)``, when given, is used
        instead and the split is ignored. Calling fit again continues training. Shuffling
        follows minidl's generator (``md.manual_seed``). ``verbose`` > 0 prints one line per
        epoch; ``callbacks`` are :mod:`minidl.train` callbacks.
        """
        c = _compiled(self)
        xs, ys = _arrays(self, x, "x", "fit"), _arrays(self, y, "y", "fit")
        if len(xs[0]) != len(ys[0]):
            raise ValueError(f"fit: x has {len(xs[0])} samples but y has {len(ys[0])}")
        if validation_split and validation_data is None:
            xs, ys, validation_data = _split(xs, ys, validation_split)
        # From minidl's generator, so md.manual_seed reproduces the order; drawn only to
        # shuffle, so later draws (dropout masks, initialisers) do not depend on `shuffle`.
        seed = int(rng().integers(2**62)) if shuffle else None
        train = DataLoader(_fields(self, xs, ys), batch_size=batch_size, shuffle=shuffle,
                           seed=seed)
        val = None
        if validation_data is not None:
            vx = _arrays(self, validation_data[0], "x", "fit")
            vy = _arrays(self, validation_data[1], "y", "fit")
            val = DataLoader(_fields(self, vx, vy), batch_size=batch_size)
        trainer = Trainer(self, c.optimizer, c.loss, metrics=c.metrics,
                          verbose=2 if verbose else 0, callbacks=callbacks,
                          num_inputs=len(xs))
        history = trainer.fit(train, epochs=epochs, val_loader=val)
        self.history = history
        return history

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False) -> Any:
        """Mean loss (and metrics) over the data, in eval mode without gradients.

        Returns the loss as a float when there is nothing else to report, else a list
        ``[loss, *others]`` in Keras' order, or a dict with ``return_dict=True``.
        """
        c = _compiled(self)
        xs, ys = _arrays(self, x, "x", "evaluate"), _arrays(self, y, "y", "evaluate")
        trainer = Trainer(self, c.optimizer, c.loss, metrics=c.metrics, verbose=0,
                          num_inputs=len(xs))
        logs = trainer.evaluate(DataLoader(_fields(self, xs, ys), batch_size=batch_size))
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def predict(self, x: Any, batch_size: int = 32) -> Any:
        """Outputs for array inputs, in eval mode without gradients, as NumPy arrays (N, ...);
        a list of arrays for a model with several outputs."""
        xs = _arrays(self, x, "x", "predict")
        out = Trainer(self, None, metrics=[], verbose=0).predict(_fields(self, xs, []),
                                                                 batch_size=batch_size)
        outs = list(out) if isinstance(out, tuple) else [out]
        return outs[0] if len(outs) == 1 and _n_outputs(self) == 1 else outs


def _split(xs: list[np.ndarray], ys: list[np.ndarray], fraction: float
           ) -> tuple[list[np.ndarray], list[np.ndarray], tuple[list, list]]:
    """Keras' ``validation_split``: the first ``floor(N * (1 - fraction))`` rows train, the
    rest validate. Returns (train xs, train ys, (validation xs, validation ys))."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fit: validation_split must be in (0, 1), got {fraction}")
    n = len(xs[0])
    cut = int(n * (1.0 - fraction))
    if cut == 0 or cut == n:
        raise ValueError(f"fit: validation_split={fraction} of {n} samples leaves {cut} for "
                         f"training and {n - cut} for validation; each needs at least one")
    return ([a[:cut] for a in xs], [a[:cut] for a in ys],
            ([a[cut:] for a in xs], [a[cut:] for a in ys]))


def _make_optimizer(optimizer: Any, module: Any) -> Any:
    if isinstance(optimizer, optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return optim.get_optimizer(optimizer, module.parameters(),
                                       lr=_KERAS_LR.get(optimizer.lower(), 1e-3))
        except ValueError as e:
            raise ValueError(f"compile: {e}, or an optimizer instance") from None
    raise TypeError(f"compile: optimizer must be a name or a minidl.optim optimizer, got "
                    f"{type(optimizer).__name__}")


def _compiled(module: Any) -> _Compiled:
    c = getattr(module, "_compiled", None)
    if c is None:
        raise RuntimeError(f"{type(module).__name__}: call compile(loss=..., optimizer=...) "
                           "before fit/evaluate")
    return c


def _n_inputs(module: Any) -> int:
    return len(module.inputs) if isinstance(module, GraphModule) else 1


def _n_outputs(module: Any) -> int:
    return len(module.outputs) if isinstance(module, GraphModule) else 1


def _output_names(module: Any) -> list[str]:
    """Prefixes of the per-output figures: '' for one output, else the output's name (its
    SymbolicTensor's, else its layer's), or ``output_i`` when those clash."""
    n = _n_outputs(module)
    if n == 1:
        return [""]
    names = []
    for i, s in enumerate(module.outputs):
        layer = module._layer_names.get(id(s.node.module)) if s.node else None
        names.append(s.name or layer or f"output_{i}")
    if len(set(names)) < len(names):
        names = [f"output_{i}" for i in range(n)]
    return names


def _arrays(module: Any, data: Any, what: str, op: str) -> list[np.ndarray]:
    """``x`` or ``y`` as a list of host arrays, one per model input (``what='x'``) or
    output (``'y'``); a dict of inputs is ordered by the Inputs' names. NumPy and CuPy
    arrays, Tensors and nested lists are all accepted (copied to the host by
    ``backend.to_numpy``). Errors name ``op`` (``fit``, ``evaluate``, ``predict``)."""
    if isinstance(data, dict) and isinstance(module, GraphModule) and what == "x":
        data = _by_name(module, data, op)
    n = _n_inputs(module) if what == "x" else _n_outputs(module)
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(items) != n:
        raise ValueError(f"{op}: expected {n} {what} array(s) (one per model "
                         f"{'input' if what == 'x' else 'output'}), got {len(items)}")
    arrays = [to_numpy(a.data if isinstance(a, Tensor) else a) for a in items]
    sizes = {len(a) for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"{op}: {what} arrays have different numbers of samples: "
                         f"{[len(a) for a in arrays]}")
    return arrays


def _by_name(module: GraphModule, data: dict, op: str) -> list[Any]:
    """The values of a dict of inputs in the order of the model's (named) Inputs."""
    unnamed = [f"{i} (shape {s.shape})" for i, s in enumerate(module.inputs) if s.name is None]
    if unnamed:
        which = (f"model input {unnamed[0]} has" if len(unnamed) == 1
                 else f"model inputs {', '.join(unnamed)} have")
        raise ValueError(f"{op}: x is a dict, but {which} no name; dict inputs need named "
                         f"Inputs (keras.Input(shape, name=...)), else pass a list in the "
                         f"Inputs' order")
    missing = [s.name for s in module.inputs if s.name not in data]
    if missing:
        raise ValueError(f"{op}: x lacks the Input(s) {missing}; its keys are {sorted(data)}")
    return [data[s.name] for s in module.inputs]


def _fields(module: Any, xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Inputs then targets for a DataLoader, with Keras' dtypes: float and uint8 inputs in
    the parameter dtype (a DataLoader would scale uint8 images by 1/255; Keras does not),
    float targets too; integer labels stay integers."""
    dt = next((p.dtype for p in module.parameters() if p.dtype.kind == "f"),
              np.dtype(np.float32))
    return tuple([a.astype(dt) if a.dtype.kind in "fu" else a for a in xs]
                 + [a.astype(dt) if a.dtype.kind == "f" else a for a in ys])
