"""Keras' compile / fit / evaluate / predict for keras.Model and keras.Sequential.

``compile``/``fit``/``evaluate``/``predict`` take NumPy arrays (or lists of them, one per
input/output) as Keras does. The training loop is built around one small function,
:func:`train_step`, so another engine (the Trainer) can replace it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import functional as F
from .. import optim
from ..autograd import Tensor, no_grad, tensor
from ..backend import rng, to_numpy
from ..data import DataLoader
from ..nn import GraphModule, Module
from ..train import FunctionMetric, Trainer

__all__ = ["TrainingMixin", "History", "get_loss", "get_metric", "compile_module",
           "fit_module", "evaluate_module", "predict_module"]


class TrainingMixin:
    """Keras' training methods, for :class:`minidl.keras.Model` and :class:`Sequential`."""

    def compile(self, loss: Any, optimizer: Any = "rmsprop", loss_weights: Any = None,
                metrics: Any = None) -> None:
        """Configure training, as Keras does.

        loss: a name ('mse', 'mae', 'binary_crossentropy', 'categorical_crossentropy',
        'sparse_categorical_crossentropy' -- these three take probabilities, as in Keras --
        or 'cross_entropy' / 'bce_with_logits' for logits), a callable ``(pred, target) ->
        Tensor``, or a list with one per output. loss_weights: one float per output.
        optimizer: an optimiser from ``minidl.optim`` or a name ('sgd', 'adam', 'adamw',
        'nadam', 'rmsprop', 'adagrad', with Keras' default learning rates).
        metrics: names ('accuracy', 'mae', 'mse') or callables ``(pred, target) -> float``,
        reported for every output.
        """
        compile_module(self, loss, optimizer, loss_weights, metrics)

    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple | None = None, shuffle: bool = True, verbose: int = 1,
            validation_split: float = 0.0) -> History:
        """Train; see :func:`fit_module`."""
        return fit_module(self, x, y, epochs, batch_size, validation_data, shuffle, verbose,
                          validation_split)

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False) -> Any:
        """Loss (and metrics); see :func:`evaluate_module`."""
        return evaluate_module(self, x, y, batch_size, verbose, return_dict)

    def predict(self, x: Any, batch_size: int = 32) -> Any:
        """Outputs as NumPy arrays (a list for several outputs); see :func:`predict_module`."""
        return predict_module(self, x, batch_size)


# ---- losses and metrics -----------------------------------------------------------------

_EPS = 1e-7


def _categorical_ce(p: Tensor, t: Tensor) -> Tensor:
    return -F.mean(F.sum(t * F.log(F.clip(p, _EPS, 1.0)), axis=-1))


def _sparse_categorical_ce(p: Tensor, t: Tensor) -> Tensor:
    return F.nll_loss(F.log(F.clip(p, _EPS, 1.0)), t)


def _mae(p: Tensor, t: Tensor) -> Tensor:
    return F.mean(F.abs(p - t))


_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss, "mean_squared_error": F.mse_loss,
    "mae": _mae, "mean_absolute_error": _mae,
    "binary_crossentropy": lambda p, t: F.binary_cross_entropy(F.clip(p, _EPS, 1 - _EPS), t),
    "categorical_crossentropy": _categorical_ce,
    "sparse_categorical_crossentropy": _sparse_categorical_ce,
    "cross_entropy": F.cross_entropy,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
}

_INT_TARGET_LOSSES = {"sparse_categorical_crossentropy", "cross_entropy"}


def get_loss(loss: str | Callable) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss function ``(pred, target) -> scalar Tensor`` from a name or a callable."""
    if callable(loss):
        return loss
    try:
        return _LOSSES[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}; expected a callable or one of "
                         f"{sorted(_LOSSES)}") from None


def _accuracy(p: np.ndarray, t: np.ndarray) -> float:
    if p.ndim == t.ndim + 1 and p.shape[-1] > 1:  # class scores vs integer labels
        return float((p.argmax(-1) == t).mean())
    if p.shape == t.shape and p.ndim >= 2 and p.shape[-1] > 1:  # one-hot targets
        return float((p.argmax(-1) == t.argmax(-1)).mean())
    return float(((p.reshape(t.shape) > 0.5) == (t > 0.5)).mean())  # binary probabilities


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy, "acc": _accuracy,
    "mae": lambda p, t: float(np.abs(p.reshape(t.shape) - t).mean()),
    "mse": lambda p, t: float(((p.reshape(t.shape) - t) ** 2).mean()),
}


def get_metric(metric: str | Callable) -> tuple[str, Callable[[np.ndarray, np.ndarray], float]]:
    """(name, fn) for a metric given by name or as a callable on NumPy arrays."""
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    try:
        return ("accuracy" if metric == "acc" else metric), _METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; expected a callable or one of "
                         f"{sorted(_METRICS)}") from None


_KERAS_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3, "rmsprop": 1e-3,
             "adagrad": 1e-3}


def _make_optimizer(optimizer: Any, module: Module) -> Any:
    if isinstance(optimizer, optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        key = optimizer.lower()
        classes = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW,
                   "nadam": optim.Nadam, "rmsprop": optim.RMSprop, "adagrad": optim.Adagrad}
        if key not in classes:
            raise ValueError(f"compile: unknown optimizer {optimizer!r}; expected one of "
                             f"{sorted(classes)} or an optimizer instance")
        return classes[key](module.parameters(), lr=_KERAS_LR[key])
    raise TypeError(f"compile: optimizer must be a name or a minidl.optim optimizer, got "
                    f"{type(optimizer).__name__}")


class _Compiled:
    def __init__(self, losses: list, loss_names: list[str], weights: list[float],
                 optimizer: Any, metrics: list) -> None:
        self.losses, self.loss_names, self.weights = losses, loss_names, weights
        self.optimizer, self.metrics = optimizer, metrics


def _n_outputs(module: Module) -> int:
    return len(module.outputs) if isinstance(module, GraphModule) else 1


def _n_inputs(module: Module) -> int:
    return len(module.inputs) if isinstance(module, GraphModule) else 1


def _output_names(module: Module) -> list[str]:
    n = _n_outputs(module)
    if n == 1:
        return [""]
    names = []
    for i, s in enumerate(module.outputs):  # type: ignore[attr-defined]
        layer = module._layer_names.get(id(s.node.module)) if s.node else None  # type: ignore
        names.append(f"{s.name or layer or f'output_{i}'}")
    if len(set(names)) < len(names):
        names = [f"output_{i}" for i in range(n)]
    return names


def compile_module(module: Module, loss: Any, optimizer: Any = "rmsprop",
                   loss_weights: Any = None, metrics: Any = None) -> None:
    """Implementation of ``compile`` for Model and Sequential (see Model.compile)."""
    n = _n_outputs(module)
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss] * n
    if len(losses) != n:
        raise ValueError(f"compile: {len(losses)} losses for {n} outputs")
    weights = [1.0] * n if loss_weights is None else [float(w) for w in loss_weights]
    if len(weights) != n:
        raise ValueError(f"compile: {len(weights)} loss_weights for {n} outputs")
    names = [loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
             for loss in losses]
    module._compiled = _Compiled([get_loss(x) for x in losses], names, weights,
                                 _make_optimizer(optimizer, module),
                                 [get_metric(m) for m in (metrics or [])])


def _compiled(module: Module) -> _Compiled:
    c = getattr(module, "_compiled", None)
    if c is None:
        raise RuntimeError(f"{type(module).__name__}: call compile(loss=..., optimizer=...) "
                           "before fit/evaluate")
    return c


# ---- data handling ----------------------------------------------------------------------

def _as_list(data: Any, n: int, what: str, module: Module) -> list[np.ndarray]:
    if isinstance(data, dict) and isinstance(module, GraphModule) and what == "x":
        by_name = {s.name: i for i, s in enumerate(module.inputs)}
        missing = [k for k in by_name if k not in data]
        if missing or None in by_name:
            raise ValueError(f"fit: dict inputs need every Input named; missing {missing}")
        data = [data[s.name] for s in module.inputs]
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(items) != n:
        raise ValueError(f"expected {n} {what} array(s) (one per model "
                         f"{'input' if what == 'x' else 'output'}), got {len(items)}")
    arrays = [to_numpy(a.data) if isinstance(a, Tensor) else np.asarray(a) for a in items]
    sizes = {len(a) for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"{what} arrays have different numbers of samples: "
                         f"{[len(a) for a in arrays]}")
    return arrays


def _param_dtype(module: Module) -> np.dtype:
    for p in module.parameters():
        if p.dtype.kind == "f":
            return p.dtype
    return np.dtype(np.float32)


def _to_tensors(arrays: list[np.ndarray], idx: Any, module: Module) -> list[Tensor]:
    dev, dt = module.device, _param_dtype(module)
    out = []
    for a in arrays:
        b = a[idx]
        if b.dtype.kind == "f":
            b = b.astype(dt, copy=False)
        out.append(tensor(b, device=dev))
    return out


def _forward_list(module: Module, xs: list[Tensor]) -> list[Tensor]:
    out = module(*xs)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _match_target(pred: Tensor, target: Tensor, loss_name: str) -> Tensor:
    """Keras accepts y of shape (N,) for predictions (N, 1): reshape such targets."""
    if loss_name in _INT_TARGET_LOSSES or target.shape == pred.shape:
        return target
    if target.size == pred.size:
        return target.reshape(pred.shape)
    return target


def compute_losses(module: Module, preds: list[Tensor], ys: list[Tensor]
                   ) -> tuple[Tensor, list[Tensor]]:
    """Weighted total loss (+ regularisation) and the per-output losses."""
    c = _compiled(module)
    per = [fn(p, _match_target(p, t, name)) for fn, p, t, name
           in zip(c.losses, preds, ys, c.loss_names)]
    total: Any = 0.0
    for w, loss in zip(c.weights, per):
        total = total + loss * w
    reg = module.regularization_loss()
    if isinstance(reg, Tensor):
        total = total + reg
    return total, per


def train_step(module: Module, xs: list[Tensor], ys: list[Tensor]
               ) -> tuple[float, list[float], list[Tensor]]:
    """One optimisation step on one batch: forward, loss, backward, optimiser step.

    Returns (total loss, per-output losses, detached predictions).
    """
    opt = _compiled(module).optimizer
    module.train()
    opt.zero_grad()
    preds = _forward_list(module, xs)
    total, per = compute_losses(module, preds, ys)
    total.backward()
    opt.step()
    return float(total.item()), [float(p.item()) for p in per], [p.detach() for p in preds]


class History:
    """What ``fit`` returns: ``history.history['loss']`` is the per-epoch training loss."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def _add(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class _Meter:
    """Sample-weighted running means of losses and metrics over an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, logs: dict[str, float], n: int) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def _batch_logs(module: Module, total: float, per: list[float], preds: list[Tensor],
                ys: list[Tensor]) -> dict[str, float]:
    c = _compiled(module)
    names = _output_names(module)
    logs = {"loss": total}
    if len(per) > 1:
        for name, v in zip(names, per):
            logs[f"{name}_loss"] = v
    for name, p, t in zip(names, preds, ys):
        pn, tn = p.numpy(), t.numpy()
        for mname, fn in c.metrics:
            logs[f"{name}_{mname}" if name else mname] = float(fn(pn, tn))
    return logs


def _batches(n: int, batch_size: int, shuffle: bool) -> Iterator[np.ndarray]:
    order = rng().permutation(n) if shuffle else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def fit_module(module: Module, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
               validation_data: tuple | None = None, shuffle: bool = True, verbose: int = 1,
               validation_split: float = 0.0) -> History:
    """Train ``module`` on NumPy data, Keras-style, with :class:`minidl.train.Trainer`.

    x: an array (N, ...) or a list with one per input; y: one per output. Calling fit again
    continues training; shuffling follows minidl's generator (``md.manual_seed``). Returns a
    :class:`History` with per-epoch loss, metrics and their ``val_`` versions.
    """
    c = _compiled(module)
    xs = _as_list(x, _n_inputs(module), "x", module)
    ys = _as_list(y, _n_outputs(module), "y", module)
    if len(xs[0]) != len(ys[0]):
        raise ValueError(f"fit: x has {len(xs[0])} samples but y has {len(ys[0])}")
    if validation_split:
        if not 0.0 < validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in (0, 1), got {validation_split}")
        cut = int(len(xs[0]) * (1.0 - validation_split))
        validation_data = ([a[cut:] for a in xs], [a[cut:] for a in ys])
        xs, ys = [a[:cut] for a in xs], [a[:cut] for a in ys]
    dt = _param_dtype(module)

    def fields(xs_, ys_):  # Keras semantics: floats to the parameter dtype, no 1/255 scaling
        return tuple([a.astype(dt) if a.dtype.kind in "fu" else a for a in xs_]
                     + [a.astype(dt) if a.dtype.kind == "f" else a for a in ys_])

    def as_list(v):
        return list(v) if isinstance(v, (tuple, list)) else [v]

    def loss(preds, targets):  # weighted sum over outputs + regularisation
        return compute_losses(module, as_list(preds), as_list(targets))[0]

    n_out, names = _n_outputs(module), _output_names(module)
    metrics = []
    for i, oname in enumerate(names):
        out = i if n_out > 1 else None
        if n_out > 1:
            metrics.append(FunctionMetric(
                lambda p, t, fn=c.losses[i], ln=c.loss_names[i]: fn(p, _match_target(p, t, ln)),
                name=f"{oname}_loss", output=out))
        for mname, fn in c.metrics:
            metrics.append(FunctionMetric(lambda p, t, fn=fn: fn(p.numpy(), t.numpy()),
                                          name=f"{oname}_{mname}" if oname else mname,
                                          output=out))
    trainer = getattr(module, "_trainer", None)
    if trainer is None or trainer.optimizer is not c.optimizer:  # recompiled: start afresh
        trainer = Trainer(module, c.optimizer, loss, metrics=metrics,
                          verbose=2 if verbose else 0, num_inputs=len(xs),
                          regularization=False)  # compute_losses already adds it
        object.__setattr__(module, "_trainer", trainer)
    seed = int(rng().integers(2**62))  # from minidl's generator: md.manual_seed reproduces
    train = DataLoader(fields(xs, ys), batch_size=batch_size, shuffle=shuffle, seed=seed)
    val = None
    if validation_data is not None:
        vx = _as_list(validation_data[0], _n_inputs(module), "x", module)
        vy = _as_list(validation_data[1], n_out, "y", module)
        val = DataLoader(fields(vx, vy), batch_size=batch_size)
    logs = trainer.fit(train, epochs=trainer.epoch + epochs, val_loader=val)
    history = History()
    history.epoch = [e - 1 for e in logs["epoch"][-epochs:]]
    for k, v in logs.items():  # lists are aligned by epoch, NaN where a key was absent
        if k not in ("epoch", "lr", "time") and not all(math.isnan(e) for e in v[-epochs:]):
            history.history[k] = list(v[-epochs:])
    module.history = history
    return history


def evaluate_module(module: Module, x: Any, y: Any, batch_size: int = 32, verbose: int = 0,
                    return_dict: bool = False) -> Any:
    """Mean loss (and metrics) over the data in eval mode.

    Returns the loss as a float when there is nothing else to report, else a list
    ``[loss, *others]`` (Keras order), or a dict with ``return_dict=True``.
    """
    _compiled(module)
    xs = _as_list(x, _n_inputs(module), "x", module)
    ys = _as_list(y, _n_outputs(module), "y", module)
    was_training = [(m, m.training) for m in module.modules()]
    module.eval()
    meter = _Meter()
    try:
        with no_grad():
            for idx in _batches(len(xs[0]), batch_size, False):
                bx, by = _to_tensors(xs, idx, module), _to_tensors(ys, idx, module)
                preds = _forward_list(module, bx)
                total, per = compute_losses(module, preds, by)
                meter.add(_batch_logs(module, float(total.item()), [float(p.item()) for p in per],
                                      preds, by), len(idx))
    finally:
        for m, flag in was_training:
            object.__setattr__(m, "training", flag)
    logs = meter.means()
    if verbose:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
    if return_dict:
        return logs
    return logs["loss"] if len(logs) == 1 else list(logs.values())


def predict_module(module: Module, x: Any, batch_size: int = 32) -> Any:
    """Outputs for NumPy inputs, in eval mode without grad, as NumPy arrays.

    A list of arrays for a model with several outputs.
    """
    xs = _as_list(x, _n_inputs(module), "x", module)
    was_training = [(m, m.training) for m in module.modules()]
    module.eval()
    chunks: list[list[np.ndarray]] = []
    try:
        with no_grad():
            for idx in _batches(len(xs[0]), batch_size, False):
                preds = _forward_list(module, _to_tensors(xs, idx, module))
                chunks.append([p.numpy() for p in preds])
    finally:
        for m, flag in was_training:
            object.__setattr__(m, "training", flag)
    outs = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
    return outs[0] if len(outs) == 1 and _n_outputs(module) == 1 else outs
