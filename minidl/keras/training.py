"""Keras's compile / fit / evaluate / predict, run by the one training loop (minidl.train.Trainer).

``compile`` turns Keras's arguments into what the Trainer takes: one loss per output (a name
of :mod:`minidl.train.losses` -- the one table, Keras's names with Keras's meaning --, a
``keras.losses`` object or a function ``(y_true, y_pred)``), summed with ``loss_weights``; an
optimiser (a name gets :mod:`minidl.keras.optimizers`' class with Keras's defaults); metrics
by Keras's names, one set per output. ``fit`` / ``evaluate`` / ``predict`` take arrays (NumPy
or CuPy, one per input and per output, or dicts by input / output name), build the model's
layers on the first batch if their input sizes are not known yet, wrap the arrays in
DataLoaders and hand them to a :class:`~minidl.train.Trainer`, so Keras-style training gets
the Trainer's NaN checks, host-sync policy, callbacks and :class:`~minidl.train.History`.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import optim
from ..autograd import Tensor, no_grad, tensor
from ..backend import rng
from ..data import DataLoader
from ..train import FunctionMetric, History, Metric, Trainer
from . import losses as keras_losses
from . import metrics as keras_metrics
from . import optimizers as keras_optimizers
from .arguments import arrays, n_outputs, output_names, per_output
from .callbacks import to_minidl
from .layers.base import Layer

__all__ = ["TrainingMixin"]

_IGNORED_COMPILE = ("run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")


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


def _unbuilt(module: Any) -> bool:
    return any(isinstance(m, Layer) and not m.built for m in module.modules())


class TrainingMixin:
    """Keras's training methods, for :class:`minidl.keras.Model` and
    :class:`minidl.keras.Sequential` (mixed into a Module)."""

    stop_training = False

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, loss_weights: Any = None,
                metrics: Any = None, weighted_metrics: Any = None, **kwargs: Any) -> None:
        """Configure training, as Keras does.

        optimizer: a name ('sgd', 'adam', 'adamw', 'nadam', 'rmsprop', 'adagrad': the
        :mod:`minidl.keras.optimizers` class with Keras's defaults), a keras optimizer or a
        ``minidl.optim`` one. loss: a name of :mod:`minidl.train.losses` (Keras's 'mse',
        'sparse_categorical_crossentropy', ... take probabilities, as in Keras), a
        ``keras.losses`` object, a function ``(y_true, y_pred)``, or a list / dict (by
        output name) of those. loss_weights: one float per output (list or dict).
        metrics: Keras's names ('accuracy', 'mae', ...), Metric objects or functions
        ``(y_true, y_pred)``: a list for every output, a list of lists or a dict per output.
        ``run_eagerly``, ``jit_compile``, ``steps_per_execution`` and ``auto_scale_loss`` are
        accepted and change nothing (minidl always runs eagerly, one step per batch).
        """
        for key in _IGNORED_COMPILE:
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"compile: unexpected keyword argument(s) {sorted(kwargs)}")
        if weighted_metrics is not None:
            raise ValueError("compile: weighted_metrics are not supported by minidl (no "
                             "sample weights)")
        if loss is None:
            raise ValueError("compile: minidl needs loss= (a name such as 'mse', a "
                             "keras.losses object or a function (y_true, y_pred))")
        names = output_names(self)
        n = len(names)
        specs = per_output(self, loss, "losses")
        missing = [nm for nm, s in zip(names, specs) if s is None]
        if missing:
            raise ValueError(f"compile: no loss for output(s) {missing}; minidl trains every "
                             f"output (give each one a loss, or loss_weights 0)")
        weights = ([1.0] * n if loss_weights is None
                   else [float(w) for w in per_output(self, loss_weights, "loss_weights", 1.0)])
        c = _Compiled([keras_losses.get(s) for s in specs], weights,
                      _make_optimizer(optimizer))
        # Keras's order of the figures: the loss, each output's loss, then each output's metrics.
        if n > 1:
            c.metrics = [FunctionMetric(functools.partial(c.output_loss, i),
                                        name=f"{name}_loss", output=i)
                         for i, name in enumerate(names)]
        for i, (name, group) in enumerate(zip(names, per_output(self, metrics, "metrics",
                                                                None, listy=True))):
            group = [] if group is None else (list(group) if isinstance(group, (list, tuple))
                                              else [group])
            for spec in group:
                m = keras_metrics.get(spec, loss=specs[i], output=None if n == 1 else i)
                if n > 1:
                    m.name = f"{name}_{m.name}"
                c.metrics.append(m)
        self._compiled = c
        self.optimizer = c.optimizer
        if not _unbuilt(self):
            self._bind_optimizer()

    def _bind_optimizer(self) -> None:
        opt = self._compiled.optimizer
        if isinstance(opt, keras_optimizers.Optimizer) and not opt.built:
            opt.build(self.parameters())

    def _build_on(self, xs: list[np.ndarray]) -> None:
        """Create the weights of layers that have none yet, from a forward pass on the first
        samples (eval mode, no graph: nothing trains, no dropout mask is drawn)."""
        if not _unbuilt(self):
            return
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with no_grad():
                self(*[tensor(a) for a in _cast_inputs(self, [a[:2] for a in xs])])
        finally:
            for m, flag in modes:
                object.__setattr__(m, "training", flag)

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Sequence[Any] | None = None,
            validation_split: float = 0.0, validation_data: tuple | None = None,
            shuffle: bool = True, class_weight: Any = None, sample_weight: Any = None,
            initial_epoch: int = 0, **kwargs: Any) -> History:
        """Train for ``epochs`` epochs on array data; returns the :class:`History` of this call
        (also kept as ``model.history``; ``history.history`` is Keras's dict: 'loss',
        '<output>_loss' per output of a multi-output model, the metrics, and the same with
        'val_').

        x: an array (N, ...), a list with one per input or a dict by input name (integer
        and bool arrays are cast to the weights' dtype, as Keras casts them); y: the same
        per output. ``batch_size`` defaults to 32. ``validation_split`` holds out the *last*
        fraction of the samples (before any shuffling), as Keras does;
        ``validation_data=(x_val, y_val)``, when given, is used instead. Calling fit again
        continues training. Shuffling follows minidl's generator (``md.manual_seed``).
        ``verbose`` 0 is silent, anything else prints one line per epoch. ``callbacks``:
        :mod:`minidl.keras.callbacks` or :mod:`minidl.train` callbacks.
        """
        _refuse(kwargs, "fit", ("steps_per_epoch", "validation_steps", "validation_batch_size",
                                "validation_freq"))
        if class_weight is not None or sample_weight is not None:
            raise ValueError("fit: class_weight and sample_weight are not supported by minidl; "
                             "weight the loss with a custom loss function instead")
        if initial_epoch:
            raise ValueError("fit: initial_epoch is not supported; calling fit again continues "
                             "training")
        batch_size = 32 if batch_size is None else batch_size
        c = _compiled(self)
        xs, ys = arrays(self, x, "x", "fit"), arrays(self, y, "y", "fit")
        if len(xs[0]) != len(ys[0]):
            raise ValueError(f"fit: x has {len(xs[0])} samples but y has {len(ys[0])}")
        if validation_split and validation_data is None:
            xs, ys, validation_data = _split(xs, ys, validation_split)
        self._build_on(xs)
        self._bind_optimizer()
        # From minidl's generator, so md.manual_seed reproduces the order; drawn only to
        # shuffle, so later draws (dropout masks, initialisers) do not depend on `shuffle`.
        seed = int(rng().integers(2**62)) if shuffle else None
        train = DataLoader(_fields(self, xs, ys), batch_size=batch_size, shuffle=shuffle,
                           seed=seed)
        val = None
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("fit: validation_data must be (x_val, y_val); sample weights "
                                 "are not supported")
            vx = arrays(self, validation_data[0], "x", "fit")
            vy = arrays(self, validation_data[1], "y", "fit")
            val = DataLoader(_fields(self, vx, vy), batch_size=batch_size)
        loss = c.loss
        if not any(p.requires_grad for p in self.parameters()):
            # As in Keras, a frozen model still "trains": the losses are computed and nothing
            # changes. The backward pass then has nothing to reach, so it gets a constant.
            warnings.warn("fit: the model has no trainable weights (trainable=False); the "
                          "epochs report the loss and change nothing", stacklevel=2)
            loss = _constant_backward(c.loss)
        trainer = Trainer(self, c.optimizer, loss, metrics=c.metrics,
                          verbose=2 if verbose else 0,
                          callbacks=to_minidl(callbacks, len(xs[0]), batch_size),
                          num_inputs=len(xs))
        with self._as_lists():
            history = trainer.fit(train, epochs=epochs, val_loader=val)
        self.history = history
        return history

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = 0, return_dict: bool = False, **kwargs: Any) -> Any:
        """Mean loss (and metrics) over the data, in eval mode without gradients.

        Returns the loss as a float when there is nothing else to report, else a list
        ``[loss, <output>_loss..., metrics...]`` in Keras's order, or a dict with
        ``return_dict=True``.
        """
        _refuse(kwargs, "evaluate", ("sample_weight", "steps", "callbacks"))
        c = _compiled(self)
        xs, ys = arrays(self, x, "x", "evaluate"), arrays(self, y, "y", "evaluate")
        self._build_on(xs)
        trainer = Trainer(self, c.optimizer, c.loss, metrics=c.metrics, verbose=0,
                          num_inputs=len(xs))
        with self._as_lists():
            logs = trainer.evaluate(DataLoader(_fields(self, xs, ys),
                                               batch_size=batch_size or 32))
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0,
                **kwargs: Any) -> Any:
        """Outputs for array inputs, in eval mode without gradients, as NumPy arrays (N, ...):
        a list of arrays for a model with several outputs (a dict for dict outputs)."""
        _refuse(kwargs, "predict", ("steps", "callbacks"))
        xs = arrays(self, x, "x", "predict")
        self._build_on(xs)
        with self._as_lists():
            out = Trainer(self, None, metrics=[], verbose=0).predict(
                _fields(self, xs, []), batch_size=batch_size or 32)
        outs = list(out) if isinstance(out, tuple) else [out]
        keys = getattr(self, "_output_keys", None)
        if keys is not None:
            return dict(zip(keys, outs))
        return outs[0] if len(outs) == 1 and n_outputs(self) == 1 else outs

    @contextlib.contextmanager
    def _as_lists(self) -> Iterator[None]:
        """While the Trainer runs, a model with dict outputs returns them as a list."""
        old = getattr(self, "_dict_outputs", False)
        object.__setattr__(self, "_dict_outputs", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_dict_outputs", old)


def _constant_backward(loss_fn: Callable[[Any, Any], Tensor]) -> Callable[[Any, Any], Tensor]:
    """``loss_fn`` whose value can be backpropagated when no weight needs a gradient: it is
    joined to a zero-weighted leaf, so ``backward`` runs and changes no weight."""
    def loss(output: Any, target: Any) -> Tensor:
        value = loss_fn(output, target)
        if value.requires_grad:
            return value
        anchor = Tensor(np.zeros((), dtype=value.dtype), requires_grad=True)
        return value + anchor * 0.0
    return loss


def _refuse(kwargs: dict, op: str, known: tuple[str, ...]) -> None:
    given = {k: v for k, v in kwargs.items() if v is not None}
    if given:
        what = "is" if len(given) == 1 else "are"
        where = [k for k in given if k in known]
        if where:
            raise ValueError(f"{op}: {sorted(where)} {what} not supported by minidl")
        raise TypeError(f"{op}: unexpected keyword argument(s) {sorted(given)}")


def _split(xs: list[np.ndarray], ys: list[np.ndarray], fraction: float
           ) -> tuple[list[np.ndarray], list[np.ndarray], tuple[list, list]]:
    """Keras's ``validation_split``: the first ``floor(N * (1 - fraction))`` rows train, the
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


def _make_optimizer(optimizer: Any) -> Any:
    if isinstance(optimizer, (optim.Optimizer, str)):
        try:
            return keras_optimizers.get(optimizer)
        except ValueError as e:
            raise ValueError(f"compile: {e}") from None
    raise TypeError(f"compile: optimizer must be a name or an optimizer (keras.optimizers or "
                    f"minidl.optim), got {type(optimizer).__name__}")


def _compiled(module: Any) -> _Compiled:
    c = getattr(module, "_compiled", None)
    if c is None:
        raise RuntimeError(f"{type(module).__name__}: call compile(loss=..., optimizer=...) "
                           "before fit/evaluate")
    return c


def _param_dtype(module: Any) -> np.dtype:
    """The dtype of the model's floating weights (float32, Keras's floatx, before any)."""
    return next((p.dtype for p in module.parameters() if p.dtype.kind == "f"),
                np.dtype(np.float32))


def _input_dtypes(module: Any, n: int) -> list[np.dtype]:
    """The dtype each of ``n`` inputs is given, as Keras casts them: the parameter dtype
    (float32 before the weights exist), except for a functional input declared with an
    integer dtype (``keras.Input(..., dtype='int64')``), which keeps it."""
    dt = _param_dtype(module)
    declared = [s.dtype for s in getattr(module, "inputs", [])]
    return [declared[i] if i < len(declared) and declared[i].kind in "iu" else dt
            for i in range(n)]


def _cast_inputs(module: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Every input in its dtype of :func:`_input_dtypes`: integer and bool inputs become
    floats too, as in Keras (uint8 images keep their values: a DataLoader would scale them
    by 1/255, Keras does not)."""
    return [a if a.dtype == dt else a.astype(dt)
            for a, dt in zip(xs, _input_dtypes(module, len(xs)))]


def _fields(module: Any, xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Inputs then targets for a DataLoader, with Keras's dtypes: inputs as
    :func:`_cast_inputs` casts them, float targets in the parameter dtype; integer labels
    stay integers (the losses cast the targets they compare with floats)."""
    dt = _param_dtype(module)
    return tuple(_cast_inputs(module, xs)
                 + [a.astype(dt) if a.dtype.kind == "f" else a for a in ys])
