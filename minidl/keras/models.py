"""keras.Model and keras.Sequential: minidl graphs and stacks with Keras's training methods,
weight lists and weight files."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import io, nn
from ..autograd import Tensor, no_grad, tensor
from ..train.checkpoint import state_arrays
from .arguments import check_keys, input_names
from .layers.base import count_params, get_weights, set_weights, snake_case
from .training import TrainingMixin, _param_dtype, _unbuilt

__all__ = ["Model", "Sequential", "load_model"]


class _KerasModel(TrainingMixin):
    """What keras.Model and keras.Sequential share beyond training: Keras's weight API."""

    def get_weights(self) -> list[np.ndarray]:
        """Every weight as a NumPy array, layer by layer, in Keras's order and layout (a
        Dense kernel (in, units); BatchNormalization's moving statistics included)."""
        return get_weights(self)

    def set_weights(self, weights: list[Any]) -> None:
        """Set every weight from arrays as :meth:`get_weights` returns them; the count and
        every shape are checked before anything changes."""
        set_weights(self, weights)

    def count_params(self) -> int:
        """Scalars in all weights, non-trainable ones (moving statistics) included, as Keras
        counts them."""
        return count_params(self)

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """Write every weight and buffer (the state dict) to ``filepath`` atomically (a
        temporary file, then a rename), through :func:`minidl.io.save`.

        The file is a minidl ``.npz`` archive under exactly the name given -- Keras 3's
        ``'model.weights.h5'`` included, so lecture code runs unchanged, but such a file is
        not HDF5 (h5py is not a minidl dependency): only :meth:`load_weights` reads it.
        """
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"save_weights: {filepath} exists and overwrite=False")
        io.save(dict(state_arrays(self.state_dict())), filepath)

    def load_weights(self, filepath: str | os.PathLike) -> None:
        """Load weights written by :meth:`save_weights` into this model (built by the same
        code). As in Keras 3 the weights are matched by structure: when the layer names
        differ (the same model code run twice in a session gets 'dense_1', ... the second
        time), the saved weights go to the layers in the same order and slot, provided every
        shape matches. All or nothing: a missing, extra or mis-shaped entry changes nothing."""
        state = io.load(filepath)
        if not isinstance(state, dict):
            raise ValueError(f"load_weights: {filepath} does not hold a weights dict")
        own = self.state_dict()
        if set(state) != set(own):
            state = _by_structure(state, own, filepath)
        self.load_state_dict(state)
        self._bind_after_load()

    def _bind_after_load(self) -> None:
        if getattr(self, "_compiled", None) is not None:
            self._bind_optimizer()

    @property
    def layers(self) -> list[nn.Module]:
        """The layers, in order (a Sequential's leading Input is not one, as in Keras)."""
        return list(self.children())

    def get_layer(self, name: str | None = None, index: int | None = None) -> nn.Module:
        """The layer called ``name`` (or at ``index``)."""
        layers = self.layers
        if index is not None:
            return layers[index]
        for m in layers:
            if getattr(m, "name", None) == name:
                return m
        keys = dict(self.named_children())
        if name in keys:
            return keys[name]
        raise ValueError(f"{type(self).__name__}.get_layer: no layer named {name!r}; layers "
                         f"are {[getattr(m, 'name', None) or k for k, m in keys.items()]}")

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "save: minidl cannot serialise a model's architecture (.keras files); use "
            "model.save_weights(path) and, in the code that builds the same model, "
            "model.load_weights(path)")

    def _call_training(self, training: bool | None, fn: Callable[[], Any]) -> Any:
        """``fn()`` with every layer in training mode ``training`` (None: as they are)."""
        if training is None:
            return fn()
        modes = [(m, m.training) for m in self.modules()]
        self.train(bool(training))
        try:
            return fn()
        finally:
            for m, flag in modes:
                object.__setattr__(m, "training", flag)


def _split_key(key: str) -> tuple[str, str]:
    """('dense_1', 'weight') from 'dense_1.weight': the layer and the weight's slot in it."""
    layer, _, slot = key.partition(".")
    return layer, slot


def _layer_order(keys: list[str]) -> list[int]:
    """For each key, the position of its layer among the layers in order of appearance."""
    seen: dict[str, int] = {}
    return [seen.setdefault(_split_key(k)[0], len(seen)) for k in keys]


def _by_structure(saved: dict[str, Any], own: dict[str, Any], path: Any) -> dict[str, Any]:
    """``saved`` re-keyed with this model's names, weight by weight in order (same layer
    grouping, same slots, same shapes); a one-line ValueError naming the first mismatch."""
    s_keys, o_keys = list(saved), list(own)
    problem = None
    if len(s_keys) != len(o_keys):
        problem = f"it holds {len(s_keys)} weights, the model has {len(o_keys)}"
    else:
        groups = _layer_order(s_keys) == _layer_order(o_keys)
        for sk, ok in zip(s_keys, o_keys):
            s_shape, o_shape = tuple(np.shape(saved[sk])), tuple(own[ok].shape)
            if _split_key(sk)[1] != _split_key(ok)[1] or s_shape != o_shape or not groups:
                problem = (f"in order, its {sk} {s_shape} meets the model's {ok} {o_shape}"
                           if groups else "its layers group the weights differently")
                break
    if problem is not None:
        raise ValueError(f"load_weights: {path} does not fit this model ({problem}; nothing "
                         f"was changed); weights load by name, else by layer order and shape: "
                         f"build the model with the code that saved them "
                         f"(keras.backend.clear_session() restarts the automatic layer names)")
    return {ok: saved[sk] for sk, ok in zip(s_keys, o_keys)}


def load_model(filepath: Any, *args: Any, **kwargs: Any) -> Any:
    """Not supported (minidl has no architecture files): raises, naming what to do instead."""
    raise NotImplementedError(
        "keras.models.load_model: minidl cannot rebuild a model from a file; rebuild it with "
        "the code that made it, then model.load_weights(path)")


class Model(_KerasModel, nn.GraphModule):
    """Keras's functional ``Model``: an :class:`minidl.nn.GraphModule` with ``compile`` /
    ``fit`` / ``evaluate`` / ``predict`` / ``summary`` and Keras's weight methods.

    ``Model(inputs=[a, b], outputs=[y, aux])`` with ``a = keras.layers.Input((5,))`` and
    layers called on symbolic tensors; ``inputs`` / ``outputs`` may be dicts (then ``x`` /
    ``y`` and per-output ``compile`` arguments are keyed by those names, and the model
    returns a dict of outputs).
    """

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None,
                 **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"Model: unexpected keyword argument(s) {sorted(kwargs)}")
        in_keys = out_keys = None
        if isinstance(inputs, dict):
            in_keys, inputs = list(inputs), list(inputs.values())
        if isinstance(outputs, dict):
            out_keys, outputs = list(outputs), list(outputs.values())
        super().__init__(inputs, outputs, name=name)
        object.__setattr__(self, "_input_keys", in_keys)
        object.__setattr__(self, "_output_keys", out_keys)
        object.__setattr__(self, "_dict_outputs", out_keys is not None)

    def forward(self, *xs: Any, training: bool | None = None) -> Any:
        if len(xs) == 1 and isinstance(xs[0], dict):
            names = input_names(self)
            check_keys(xs[0], names, "the input dict", "Model")  # type: ignore[arg-type]
            xs = tuple(xs[0][k] for k in names)
        out = self._call_training(training, lambda: nn.GraphModule.forward(self, *xs))
        if self._dict_outputs:
            return dict(zip(self._output_keys, out if isinstance(out, list) else [out]))
        return out

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
            params = 0 if id(m) in seen else count_params(m)
            seen.add(id(m))
            shapes = ", ".join(str(o.shape) for o in node.outputs)
            src = ", ".join(sym_names.get(id(s), "?") for s in node.inputs())
            rows.append((f"{lname} ({type(m).__name__})", shapes, f"{params:,}", src))
            for o in node.outputs:
                sym_names[id(o)] = lname
        print_fn(_table(f'Model: "{self.name or "model"}"', rows, self))


class Sequential(_KerasModel, nn.Sequential):
    """Keras's ``Sequential``: an :class:`minidl.nn.Sequential` with ``compile`` / ``fit`` /
    ``evaluate`` / ``predict`` / ``summary``, ``add`` and Keras's weight methods.

    ``Sequential([Input((4,)), layer, ...])``, ``Sequential([Dense(3, input_shape=[4]),
    ...])`` or ``Sequential()`` and ``add``. When the sample shape is known (a leading
    ``Input``, a first layer's ``input_shape=``), the layers are built right away, as in
    Keras; otherwise on the first call or ``fit``. Children are registered as '0', '1', ...
    (state-dict keys '0.weight'); ``get_layer(name)`` finds a layer by its Keras name.
    """

    def __init__(self, layers: Any = None, *more: Any, name: str | None = None,
                 trainable: bool = True) -> None:
        if isinstance(layers, (list, tuple)):
            layers = tuple(layers)
        elif layers is None:
            layers = ()
        else:
            layers = (layers,)
        layers = layers + more
        super().__init__()
        self.name = name
        self._input_shape: tuple[int, ...] | None = None
        self._input_name: str | None = None
        for layer in layers:
            self.add(layer, build=False)
        self._build_if_known()
        if not trainable:
            self.trainable = False

    def add(self, layer: Any, build: bool = True) -> Sequential:  # type: ignore[override]
        """Append a layer (a leading ``keras.Input`` sets the sample shape instead)."""
        if isinstance(layer, nn.SymbolicTensor):
            if len(self._modules) or self._input_shape is not None:
                raise ValueError("Sequential.add: an Input can only come first")
            self._input_shape, self._input_name = tuple(layer.shape[1:]), layer.name
            return self
        if not isinstance(layer, nn.Module):
            raise TypeError(f"Sequential.add: expected a layer, got {type(layer).__name__}")
        if not len(self._modules) and self._input_shape is None:
            self._input_shape = getattr(layer, "declared_input_shape", None)
        nn.Sequential.append(self, layer)
        if build:
            self._build_if_known()
        return self

    def _build_if_known(self) -> None:
        if self._input_shape is not None and len(self._modules) and _unbuilt(self):
            self._build_on([np.zeros((2, *self._input_shape), np.float32)])

    @property
    def input_shape(self) -> tuple[int | None, ...] | None:
        """Keras's ``(None, *sample_shape)`` when the sample shape is known."""
        return None if self._input_shape is None else (None, *self._input_shape)

    def forward(self, x: Any, training: bool | None = None) -> Any:
        if isinstance(x, dict):
            names = input_names(self)
            check_keys(x, names, "the input dict", "Sequential")  # type: ignore[arg-type]
            x = x[names[0]]
        if not isinstance(x, Tensor):
            x = tensor(x, device=self.device)
        if self._input_shape is None:
            self._input_shape = tuple(x.shape[1:])
        return self._call_training(training, lambda: nn.Sequential.forward(self, x))

    def summary(self, input_shape: Sequence[int] | None = None,
                print_fn: Callable[[str], Any] = print) -> None:
        """Print Keras's table for the known sample shape (or ``input_shape``): each layer
        as ``name (Type)`` with its output shape ``(None, ...)`` and its parameter count
        (a Dense layer's activation is part of the layer, as in Keras), then the totals.
        :func:`minidl.summary.summary` gives minidl's table (buffers, MACs, memory)."""
        shape = input_shape if input_shape is not None else self._input_shape
        if shape is None:
            raise ValueError("Sequential.summary: the input shape is unknown; start the model "
                             "with keras.layers.Input(shape), give the first layer "
                             "input_shape=, call it once, or pass summary(input_shape=...)")
        self._build_on([np.zeros((2, *shape), np.float32)])
        x = tensor(np.zeros((1, *shape), _param_dtype(self)), device=self.device)
        rows = [("Layer (type)", "Output Shape", "Param #")]
        counts: dict[str, int] = {}

        def run() -> None:
            nonlocal x
            for m in self.children():
                x = m(x)
                name = getattr(m, "name", None)
                if not name:
                    base = snake_case(type(m).__name__)
                    k = counts.get(base, 0)
                    counts[base] = k + 1
                    name = base if k == 0 else f"{base}_{k}"
                rows.append((f"{name} ({type(m).__name__})", str((None, *x.shape[1:])),
                             f"{count_params(m):,}"))
        with no_grad():
            self._call_training(False, run)
        print_fn(_table(f'Model: "{self.name or "sequential"}"', rows, self))


def _table(title: str, rows: list[tuple[str, ...]], model: Any) -> str:
    """Keras's summary: ``title``, the rows (the first one the header) in padded columns,
    then the total, trainable and non-trainable parameter counts."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    line = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [title, line]
    for j, r in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if j == 0:
            out.append(line)
    total = count_params(model)
    trainable = model.num_parameters(trainable_only=True)
    out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(out)
