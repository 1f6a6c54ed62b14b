"""keras.Model and keras.Sequential: minidl graphs and stacks with Keras' training methods."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import nn
from ..summary import summary
from .training import TrainingMixin

__all__ = ["Model", "Sequential"]


class Model(TrainingMixin, nn.GraphModule):
    """Keras' functional ``Model``: an :class:`minidl.nn.GraphModule` with ``compile`` /
    ``fit`` / ``evaluate`` / ``predict`` / ``summary``.

    ``Model(inputs=[a, b], outputs=[y, aux])`` with ``a = keras.layers.Input((5,))`` and
    layers called on symbolic tensors.
    """

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


class Sequential(TrainingMixin, nn.Sequential):
    """Keras' ``Sequential``: an :class:`minidl.nn.Sequential` with ``compile`` / ``fit`` /
    ``evaluate`` / ``predict`` / ``summary``.

    ``Sequential([Input((4,)), layer, ...])`` or ``Sequential(layer, ...)``; a leading
    ``Input`` only records the sample shape (``input_shape``), which ``summary`` uses.
    """

    def __init__(self, *layers: Any, name: str | None = None) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        shape = None
        if layers and isinstance(layers[0], nn.SymbolicTensor):
            shape, layers = layers[0].shape[1:], layers[1:]
        super().__init__(*layers)
        self.name = name
        if shape is not None:
            self.input_shape = shape

    def summary(self, input_shape: Sequence[int] | None = None,
                print_fn: Callable[[str], Any] = print) -> None:
        """Print the layer table of :func:`minidl.summary.summary` for one sample of
        ``input_shape`` (default: the shape of a leading ``Input``)."""
        shape = input_shape if input_shape is not None else getattr(self, "input_shape", None)
        if shape is None:
            raise ValueError("Sequential.summary: the input shape is unknown; start the model "
                             "with keras.layers.Input(shape) or pass summary(input_shape=...)")
        summary(self, tuple(shape), print_fn=print_fn)
