"""The Keras-style functional API: ``Input``, layers called on symbolic tensors, ``Model``.

    inp_wide, inp_deep = nn.Input((5,), name="wide"), nn.Input((6,), name="deep")
    h = nn.Linear(6, 30, activation="relu")(inp_deep)
    h = nn.Linear(30, 30, activation="relu")(h)
    out = nn.Linear(35, 1)(nn.Concat()([inp_wide, h]))
    aux = nn.Linear(30, 1)(h)
    model = nn.Model(inputs=[inp_wide, inp_deep], outputs=[out, aux])

Calling a Module on a :class:`SymbolicTensor` records a node (the module and its
arguments) instead of computing; the output's shape is found by running the layer once on
a small batch of zeros in eval mode without grad (or by its ``compute_output_shape``).
``Model`` sorts the nodes topologically and replays them on real tensors. A layer called
twice is *shared*: one set of weights, two nodes.

``compile``/``fit``/``evaluate``/``predict`` take NumPy arrays (or lists of them, one per
input/output) as Keras does. They work for ``Model`` and ``Sequential``. The training loop
is built around one small function, :func:`train_step`, so another engine (the Trainer) can
replace it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad, tensor
from ..backend import rng, to_numpy
from .module import Module

__all__ = ["Input", "SymbolicTensor", "Model", "History", "train_step", "is_symbolic",
           "symbolic_call", "get_loss", "get_metric"]


# ---- symbolic graph ---------------------------------------------------------------------

class SymbolicTensor:
    """A placeholder for a batch of data flowing through a graph under construction.

    ``shape`` has ``None`` for the batch dimension: ``Input((6,)).shape == (None, 6)``.
    """

    def __init__(self, shape: tuple[int | None, ...], dtype: Any, node: _Node | None,
                 index: int = 0, name: str | None = None) -> None:
        self.shape, self.dtype, self.node, self.index, self.name = (
            tuple(shape), np.dtype(dtype), node, index, name)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        src = "Input" if self.node is None else type(self.node.module).__name__
        name = f" name={self.name!r}" if self.name else ""
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype} from {src}{name}>"

    def _op(self, fn: Callable[..., Any], *others: Any) -> SymbolicTensor:
        from .activation import Lambda  # noqa: PLC0415 - activation imports nothing from here
        return Lambda(fn)(self, *others)

    # Arithmetic on symbolic tensors becomes Lambda nodes (Keras allows ``a + b``).
    def __add__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a + b, o)

    def __radd__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: b + a, o)

    def __sub__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a - b, o)

    def __rsub__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: b - a, o)

    def __mul__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a * b, o)

    def __rmul__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: b * a, o)

    def __truediv__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a / b, o)


def Input(shape: Sequence[int] | int, name: str | None = None,  # noqa: N802 - Keras name
          dtype: Any = np.float32) -> SymbolicTensor:
    """A symbolic model input for samples of ``shape`` (the batch dimension is implicit)."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(shape)
    if any(not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ValueError(f"Input: shape must be positive ints (without the batch dim), "
                         f"got {shape}")
    return SymbolicTensor((None, *(int(s) for s in shape)), dtype, None, 0, name)


class _Node:
    """One call of a module in the graph: ``outputs = module(*args, **kwargs)``."""

    def __init__(self, module: Module, args: tuple, kwargs: dict) -> None:
        self.module, self.args, self.kwargs = module, args, kwargs
        self.outputs: list[SymbolicTensor] = []
        self.multi = False

    def inputs(self) -> list[SymbolicTensor]:
        return [s for s in _walk(self.args) if isinstance(s, SymbolicTensor)] + \
               [s for s in _walk(tuple(self.kwargs.values())) if isinstance(s, SymbolicTensor)]


def _walk(obj: Any) -> Iterator[Any]:
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _walk(o)
    else:
        yield obj


def _map(obj: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(obj, list):
        return [_map(o, fn) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    return fn(obj)


def is_symbolic(args: Any) -> bool:
    """Whether any (nested) argument is a SymbolicTensor."""
    return any(isinstance(a, SymbolicTensor) for a in _walk(args))


def symbolic_call(module: Module, args: tuple, kwargs: dict) -> Any:
    """Record ``module(*args)`` as a graph node; return symbolic output(s)."""
    node = _Node(module, args, kwargs)
    compute = getattr(module, "compute_output_shape", None)
    if compute is not None:
        shapes = compute(*_map(args, lambda a: a.shape if isinstance(a, SymbolicTensor) else a))
        first = next(s for s in _walk(args) if isinstance(s, SymbolicTensor))
        outs: Any = (SymbolicTensor(tuple(shapes), first.dtype, node),)
        node.multi = False
    else:
        example = _map(args, lambda a: _example(a, module) if isinstance(a, SymbolicTensor)
                       else a)
        ex_kwargs = {k: _map(v, lambda a: _example(a, module) if isinstance(a, SymbolicTensor)
                             else a) for k, v in kwargs.items()}
        flags = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            with no_grad():
                result = module.forward(*example, **ex_kwargs)
        except Exception as e:
            shapes = [s.shape for s in _walk(args) if isinstance(s, SymbolicTensor)]
            raise type(e)(f"{type(module).__name__} called on symbolic input(s) of shape "
                          f"{shapes}: {e}") from e
        finally:
            for m, flag in flags:
                object.__setattr__(m, "training", flag)
        node.multi = isinstance(result, (tuple, list))
        results = list(result) if node.multi else [result]
        outs = tuple(SymbolicTensor((None, *r.shape[1:]), r.dtype, node, i)
                     for i, r in enumerate(results))
    node.outputs = list(outs)
    return list(outs) if node.multi else outs[0]


def _example(s: SymbolicTensor, module: Module) -> Tensor:
    """Two samples of zeros (two, so batch statistics are defined) on the module's device."""
    from ..backend import xp_for  # noqa: PLC0415
    xp = xp_for(module.device)
    return Tensor(xp.zeros((2, *s.shape[1:]), dtype=s.dtype))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Model(Module):
    """A network defined by its symbolic inputs and outputs (Keras' functional ``Model``).

    ``Model(inputs=[a, b], outputs=[y, aux])``; calling it with real tensors (one per input)
    returns a list of output tensors (a single tensor when ``outputs`` was not a list).
    Layers are registered under their ``name`` or a Keras-style one (``linear``,
    ``linear_1``, ...), so state-dict keys read ``linear_1.weight``.
    """

    def __init__(self, inputs: SymbolicTensor | Sequence[SymbolicTensor],
                 outputs: SymbolicTensor | Sequence[SymbolicTensor],
                 name: str | None = None) -> None:
        super().__init__()
        self.name = name
        self._single_input = isinstance(inputs, SymbolicTensor)
        self._single_output = isinstance(outputs, SymbolicTensor)
        self.inputs = [inputs] if self._single_input else list(inputs)
        self.outputs = [outputs] if self._single_output else list(outputs)
        for what, group in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not group:
                raise ValueError(f"Model: {what} is empty")
            for s in group:
                if not isinstance(s, SymbolicTensor):
                    raise TypeError(f"Model: {what} must be symbolic tensors (from nn.Input "
                                    f"and layers called on it), got {type(s).__name__}")
        for s in self.inputs:
            if s.node is not None:
                raise ValueError(f"Model: inputs must come from nn.Input, but {s} is a layer "
                                 "output")
        self._nodes = self._toposort()
        names: dict[int, str] = {}
        counts: dict[str, int] = {}
        for node in self._nodes:
            m = node.module
            if id(m) in names:
                continue
            base = getattr(m, "name", None) or _snake(type(m).__name__)
            if getattr(m, "name", None):
                key = base
                if key in self._modules:
                    raise ValueError(f"Model: two layers are named {key!r}")
            else:
                k = counts.get(base, 0)
                key = base if k == 0 else f"{base}_{k}"
                while key in self._modules:
                    k += 1
                    key = f"{base}_{k}"
                counts[base] = k + 1
            names[id(m)] = key
            self.add_module(key, m)
        self._layer_names = names

    def _toposort(self) -> list[_Node]:
        """Nodes in an order where each runs after the nodes producing its inputs."""
        order: list[_Node] = []
        state: dict[int, int] = {}  # 1 = visiting, 2 = done
        given = {id(s) for s in self.inputs}
        for out in self.outputs:
            stack: list[tuple[SymbolicTensor, bool]] = [(out, False)]
            while stack:
                sym, expanded = stack.pop()
                node = sym.node
                if node is None:
                    if id(sym) not in given:
                        raise ValueError(f"Model: the outputs depend on {sym}, which is not "
                                         "in inputs")
                    continue
                if expanded:
                    if state.get(id(node)) != 2:
                        state[id(node)] = 2
                        order.append(node)
                    continue
                if state.get(id(node)) == 2:
                    continue
                state[id(node)] = 1
                stack.append((sym, True))
                for s in reversed(node.inputs()):
                    if s.node is not None and state.get(id(s.node)) == 1:
                        raise ValueError("Model: the graph has a cycle")
                    stack.append((s, False))
        return order

    @property
    def layers(self) -> list[Module]:
        """The distinct layers, in graph order."""
        return list(self._modules.values())

    def get_layer(self, name: str) -> Module:
        """The layer registered under ``name``."""
        try:
            return self._modules[name]
        except KeyError:
            raise KeyError(f"Model: no layer named {name!r}; layers are "
                           f"{list(self._modules)}") from None

    def forward(self, *xs: Any) -> Any:
        if len(xs) == 1 and isinstance(xs[0], (list, tuple)) and len(self.inputs) > 1:
            xs = tuple(xs[0])
        if len(xs) != len(self.inputs):
            raise ValueError(f"Model: expected {len(self.inputs)} inputs "
                             f"{[s.shape for s in self.inputs]}, got {len(xs)}")
        values: dict[int, Any] = {}
        for sym, x in zip(self.inputs, xs):
            if not isinstance(x, Tensor):
                x = tensor(x, device=self.device)
            if x.ndim != sym.ndim or x.shape[1:] != sym.shape[1:]:
                label = f" {sym.name!r}" if sym.name else ""
                raise ValueError(f"Model: input{label} expects shape {sym.shape}, got "
                                 f"{tuple(x.shape)}")
            values[id(sym)] = x

        def resolve(a: Any) -> Any:
            return values[id(a)] if isinstance(a, SymbolicTensor) else a

        for node in self._nodes:
            args = _map(node.args, resolve)
            kwargs = {k: _map(v, resolve) for k, v in node.kwargs.items()}
            result = node.module(*args, **kwargs)
            results = list(result) if node.multi else [result]
            for sym, r in zip(node.outputs, results):
                values[id(sym)] = r
        outs = [values[id(s)] for s in self.outputs]
        return outs[0] if self._single_output else outs

    def summary(self, print_fn: Callable[[str], Any] = print) -> None:
        """Print a Keras-style table: layer, output shape, parameters, inputs."""
        rows = [("Layer (type)", "Output Shape", "Param #", "Connected to")]
        seen: set[int] = set()
        sym_names: dict[int, str] = {}
        for i, s in enumerate(self.inputs):
            name = s.name or f"input_{i}"
            sym_names[id(s)] = name
            rows.append((f"{name} (Input)", str(s.shape), "0", ""))
        for node in self._nodes:
            m = node.module
            lname = self._layer_names[id(m)]
            params = 0 if id(m) in seen else sum(p.size for p in m.parameters())
            seen.add(id(m))
            shapes = ", ".join(str(o.shape) for o in node.outputs)
            src = ", ".join(sym_names.get(id(s), "?") for s in node.inputs())
            rows.append((f"{lname} ({type(m).__name__})", shapes, f"{params:,}", src))
            for o in node.outputs:
                sym_names[id(o)] = lname
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        title = f'Model: "{self.name or "model"}"'
        out = [title, line]
        for j, r in enumerate(rows):
            out.append("  ".join(r[c].ljust(widths[c]) for c in range(4)).rstrip())
            if j == 0:
                out.append(line)
        total = self.num_parameters()
        trainable = self.num_parameters(trainable_only=True)
        out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}"]
        print_fn("\n".join(out))

    def extra_repr(self) -> str:
        return (f"inputs={[s.shape for s in self.inputs]}, "
                f"outputs={[s.shape for s in self.outputs]}")

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
    # optim sits above nn; importing it here, when compile runs, keeps the layering
    # acyclic at import time.
    from .. import optim  # noqa: PLC0415
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
    return len(module.outputs) if isinstance(module, Model) else 1


def _n_inputs(module: Module) -> int:
    return len(module.inputs) if isinstance(module, Model) else 1


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
    if isinstance(data, dict) and isinstance(module, Model) and what == "x":
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
    # data and train sit above nn in the layering: import them when fit runs
    from ..data import DataLoader  # noqa: PLC0415
    from ..train import FunctionMetric, Trainer  # noqa: PLC0415

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
