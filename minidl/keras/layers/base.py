"""The base of the Keras layers: automatic names, build on first call, Keras's weight lists.

A Keras layer is a :class:`minidl.nn.Module` (so summary, flow.Recorder, to_dot, io.save and
``.to(device)`` work on it) whose weights are created on its first call, from the input's
shape, as Keras does: ``Dense(32)`` needs no input size. ``get_weights()`` /
``set_weights()`` speak Keras's layout (a Dense kernel (in, units)); the minidl weights
keep minidl's ((units, in)), so the fast minidl kernels run unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import nn
from ...autograd import Tensor, tensor
from ...backend import get_array_module, get_default_device, to_device, to_numpy
from ...optim.regularizers import Regularizer
from .. import activations, initializers
from ..config import unique_name

__all__ = ["KernelLayer", "Layer", "weight_slots", "get_weights", "set_weights"]


def snake_case(name: str) -> str:
    """Keras's automatic names: 'Conv2D' -> 'conv2d', 'MaxPooling2D' -> 'max_pooling2d'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


# A weight as Keras shows it: (tensor, to Keras's layout, from Keras's layout)
Slot = tuple[Tensor, Callable[[Any], Any], Callable[[Any], Any]]


def _same(a: Any) -> Any:
    return a


class Layer(nn.Module):
    """Base class of the Keras layers.

    Keyword arguments every layer takes: ``name`` (default: Keras's automatic one, 'dense',
    'dense_1', ...), ``trainable`` (False freezes its weights: no gradients, no
    weight-gradient work, no updates), ``input_shape`` (Keras 2's way to give a
    Sequential's first layer its sample shape) and ``dtype`` of the weights (default: the
    input's floating dtype, float32 for Keras's arrays). Anything else is a TypeError that
    names the layer.
    """

    def __init__(self, *, name: str | None = None, trainable: bool = True,
                 input_shape: Any = None, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"{sorted(kwargs)}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.built = False
        self.declared_input_shape = None if input_shape is None else tuple(input_shape)
        self.weight_dtype = None if dtype is None else np.dtype(dtype)
        if not trainable:
            self.trainable = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Keras layers take arrays too (layer(np_array)); they become Tensors on the default
        # device (or on the layer's, once it has weights).
        if args and isinstance(args[0], np.ndarray):
            dev = self.device if any(True for _ in self.parameters()) else get_default_device()
            args = (tensor(args[0], device=dev), *args[1:])
        return super().__call__(*args, **kwargs)

    # ---- building -------------------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...], dtype: Any, device: str) -> None:
        """Create the weights for inputs of ``input_shape`` (batch first); none by default."""

    def _maybe_build(self, x: Any) -> None:
        if not self.built:
            shape = tuple(x.shape) if not isinstance(x, (list, tuple)) else None
            first = x if not isinstance(x, (list, tuple)) else x[0]
            dt = self.weight_dtype or (first.dtype if first.dtype.kind == "f"
                                       else np.dtype(np.float32))
            self.build(shape if shape is not None else tuple(first.shape), dt, first.device)
            self.built = True

    def _param(self, array: Any, device: str) -> nn.Parameter:
        return nn.Parameter(to_device(np.ascontiguousarray(array), device))

    # ---- Keras's view of the weights ---------------------------------------------------------
    def _slots(self) -> list[Slot]:
        """This layer's weights, in Keras's order (trainable ones first, as created), with
        their layout conversions."""
        out: list[Slot] = []
        for _, t in self.state_dict(keep_vars=True).items():
            if t.dtype.kind == "f":
                out.append((t, _same, _same))
        return out

    def get_weights(self) -> list[np.ndarray]:
        """The weights as NumPy arrays in Keras's order and layout."""
        return get_weights(self)

    def set_weights(self, weights: list[Any]) -> None:
        """Set the weights from arrays in Keras's order and layout (all checked first)."""
        set_weights(self, weights)

    @property
    def weights(self) -> list[Tensor]:
        """The weight Tensors (minidl's layout), trainable and not."""
        return [s[0] for s in weight_slots(self)]

    @property
    def trainable_weights(self) -> list[Tensor]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def non_trainable_weights(self) -> list[Tensor]:
        ids = {id(p) for p in self.trainable_weights}
        return [t for t in self.weights if id(t) not in ids]

    def count_params(self) -> int:
        """Number of scalars in all weights (non-trainable ones included, as in Keras)."""
        if not self.built:
            raise ValueError(f"{self.name}: count_params() needs the layer built (call it on "
                             f"an input first)")
        return count_params(self)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def weight_slots(module: Any) -> list[Slot]:
    """The Keras weights of any module: a Keras layer's own, else its float parameters and
    buffers and then its children's, each tensor once."""
    seen: set[int] = set()
    out: list[Slot] = []

    def visit(m: Any) -> None:
        if isinstance(m, Layer):
            items = m._slots()
        else:
            items = [(t, _same, _same) for t in list(m._parameters.values())
                     + [b for k, b in m._buffers.items() if k not in m._non_persistent]
                     if t is not None and t.dtype.kind == "f"]
        for slot in items:
            if id(slot[0]) not in seen:
                seen.add(id(slot[0]))
                out.append(slot)
        if not isinstance(m, Layer):     # a Layer's _slots cover its whole subtree
            for child in m.children():
                visit(child)

    visit(module)
    return out


def count_params(module: Any) -> int:
    """Scalars in all of ``module``'s Keras weights."""
    return int(sum(s[0].size for s in weight_slots(module)))


def get_weights(module: Any) -> list[np.ndarray]:
    """``module``'s weights as host arrays in Keras's order and layout."""
    return [np.array(to_keras(to_numpy(t.data))) for t, to_keras, _ in weight_slots(module)]


def set_weights(module: Any, weights: list[Any]) -> None:
    """Assign arrays in Keras's order and layout; counts and shapes are checked for every
    weight before any is changed."""
    slots = weight_slots(module)
    owner = getattr(module, "name", None) or type(module).__name__
    weights = list(weights)
    if len(weights) != len(slots):
        raise ValueError(f"{owner}.set_weights: expected {len(slots)} arrays (shapes "
                         f"{[tuple(to_keras(to_numpy(t.data)).shape) for t, to_keras, _ in slots]}"
                         f"), got {len(weights)}")
    new = []
    for i, ((t, to_keras, from_keras), w) in enumerate(zip(slots, weights)):
        arr = np.asarray(to_numpy(w.data if isinstance(w, Tensor) else w))
        want = tuple(to_keras(to_numpy(t.data)).shape)
        if arr.shape != want:
            raise ValueError(f"{owner}.set_weights: array {i} has shape {arr.shape}, the "
                             f"weight expects {want}")
        xp = get_array_module(t.data)
        new.append((t, xp.asarray(to_device(np.ascontiguousarray(from_keras(arr)), t.device),
                                  dtype=t.dtype)))
    for t, arr in new:
        t.data = arr


def activation_module(identifier: Any) -> nn.Module | None:
    """A Keras activation as a minidl Module (None for 'linear'/None): nn's own modules for
    the common names, so that flow.Recorder and summaries see them; a Lambda otherwise."""
    if identifier is None or identifier == "linear":
        return None
    if isinstance(identifier, nn.Module):
        return identifier
    fn = activations.get(identifier)
    table = {activations.relu: nn.ReLU, activations.sigmoid: nn.Sigmoid,
             activations.tanh: nn.Tanh, activations.softmax: nn.Softmax,
             activations.elu: nn.ELU}
    if fn in table:
        return table[fn]()
    if fn is activations.leaky_relu:
        return nn.LeakyReLU(0.2)
    if fn is activations.linear:
        return None
    return nn.Lambda(fn, name=activations.name_of(fn))


class KernelLayer(Layer):
    """A layer with a kernel and an optional bias (Dense, Conv2D): the minidl weight
    ``weight`` keeps minidl's layout, and :meth:`to_keras` / :meth:`from_keras` convert it
    to and from Keras's, which ``kernel``, ``get_weights()``, the initializer, the
    regularizer and the constraint see."""

    @staticmethod
    def to_keras(w: Any) -> Any:
        """minidl's kernel layout -> Keras's (an array or a Tensor, as a view)."""
        raise NotImplementedError

    @staticmethod
    def from_keras(w: Any) -> Any:
        """Keras's kernel layout -> minidl's."""
        raise NotImplementedError

    def _keep_weight_options(self, activation: Any, use_bias: bool, kernel_initializer: Any,
                             bias_initializer: Any, kernel_regularizer: Any,
                             bias_regularizer: Any, activity_regularizer: Any,
                             kernel_constraint: Any, bias_constraint: Any) -> None:
        """The constructor arguments both layers share, checked and kept for :meth:`build`."""
        if activity_regularizer is not None:
            raise ValueError(f"{type(self).__name__}: activity_regularizer is not supported by "
                             "minidl; add the penalty of the output to the loss instead (a "
                             "custom loss)")
        self.activation = activation_module(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def _build_weights(self, kernel_shape: tuple[int, ...], dtype: Any, device: str) -> None:
        """The kernel, of Keras's ``kernel_shape``, from ``kernel_initializer`` with its
        regularizer and constraint, and the bias of its last size (or none when
        ``use_bias`` is False)."""
        kernel = np.asarray(self.kernel_initializer(kernel_shape, dtype), dtype=dtype)
        self.weight = self._param(self.from_keras(kernel), device)
        self.weight.regularizer = keras_regularizer(self.kernel_regularizer, self.to_keras)
        self.weight.constraint = keras_constraint(self.kernel_constraint, self.to_keras,
                                                  self.from_keras)
        if not self.use_bias:
            self.register_parameter("bias", None)
            return
        size = kernel_shape[-1]
        self.bias = self._param(np.asarray(self.bias_initializer((size,), dtype), dtype=dtype),
                                device)
        self.bias.regularizer = self.bias_regularizer
        self.bias.constraint = self.bias_constraint

    def _slots(self) -> list[Slot]:
        if not self.built:
            return []
        slots = [(self.weight, self.to_keras, self.from_keras)]
        return slots + ([(self.bias, _same, _same)] if self.bias is not None else [])

    @property
    def kernel(self) -> Tensor:
        """The kernel in Keras's layout: a view of ``weight``."""
        return Tensor(self.to_keras(self.weight.data))


def keras_regularizer(reg: Any, to_keras: Callable[[Tensor], Tensor]) -> Any:
    """``reg`` applied to the weight in Keras's layout (l1/l2 sums need no transpose)."""
    if reg is None or isinstance(reg, Regularizer):
        return reg
    return lambda w: reg(to_keras(w))


def keras_constraint(c: Any, to_keras: Callable[[Any], Any],
                     from_keras: Callable[[Any], Any]) -> Any:
    """``c`` applied to the weight array in Keras's layout, copied back into minidl's."""
    if c is None:
        return None

    def apply(w: Any) -> Any:
        return get_array_module(w).ascontiguousarray(from_keras(c(to_keras(w))))
    apply.keras_constraint = c  # type: ignore[attr-defined]
    return apply
