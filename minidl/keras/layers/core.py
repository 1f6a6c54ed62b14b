"""Keras's core layers: Dense, Activation, ReLU, LeakyReLU, ELU, Softmax, Dropout, Flatten,
Reshape, Lambda."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ... import functional as F
from ...autograd import Tensor
from ...functional.validation import check_probability, positive_int
from .. import activations
from ..config import data_format_of
from .base import KernelLayer, Layer

__all__ = ["Dense", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "Flatten",
           "Reshape", "Lambda"]


class Dense(KernelLayer):
    """Keras's fully connected layer: ``activation(x @ kernel + bias)``.

    x (..., in) -> (..., units); ``in`` is taken from the first input, as in Keras. The
    minidl weight ``weight`` is (units, in) (so ``F.linear`` runs, and a frozen Dense costs
    no weight-gradient GEMM); ``kernel`` and ``get_weights()`` show Keras's (in, units).
    ``kernel_initializer`` (default 'glorot_uniform'), ``bias_initializer`` ('zeros'),
    regularizers and constraints see the kernel in Keras's layout.
    """

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keep_weight_options(activation, use_bias, kernel_initializer, bias_initializer,
                                  kernel_regularizer, bias_regularizer, activity_regularizer,
                                  kernel_constraint, bias_constraint)
        self.units = positive_int(units, "units", "Dense")
        self.in_features: int | None = None

    @staticmethod
    def to_keras(w: Any) -> Any:
        """(units, in) -> Keras's (in, units)."""
        return w.T

    from_keras = to_keras

    def build(self, input_shape: tuple[int, ...], dtype: Any, device: str) -> None:
        if len(input_shape) < 2:
            raise ValueError(f"Dense {self.name!r}: expected inputs (batch, ..., features), got "
                             f"shape {input_shape}")
        self.in_features = int(input_shape[-1])
        self._build_weights((self.in_features, self.units), dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        self._maybe_build(x)
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"Dense {self.name!r}: expected inputs of shape (batch, ..., "
                             f"{self.in_features}), got {tuple(x.shape)}")
        y = F.linear(x, self.weight, self.bias)
        return y if self.activation is None else self.activation(y)

    def macs(self, inputs: tuple, output: Tensor) -> int:
        return int(output.size) * int(self.in_features or 0)

    def extra_repr(self) -> str:
        act = "" if self.activation is None else f", activation={type(self.activation).__name__}"
        return f"{self.in_features} -> {self.units}{act}, name={self.name!r}"


class Activation(Layer):
    """An activation by name ('relu', 'softmax', ...) or function, as a layer."""

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fn = activations.get(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return f"{activations.name_of(self.fn)}, name={self.name!r}"


class ReLU(Layer):
    """Keras's ReLU layer: ``max_value``, ``negative_slope`` and ``threshold`` as in Keras."""

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: Tensor) -> Tensor:
        return activations.relu(x, self.negative_slope, self.max_value, self.threshold)


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x (Keras's layer default 0.3)."""

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        if "alpha" in kwargs:     # Keras 2's spelling, still accepted by Keras 3
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)


class ELU(Layer):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class Softmax(Layer):
    """softmax along ``axis`` (default -1)."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, axis=self.axis)


class Dropout(Layer):
    """Keras's Dropout: while training (fit), zero each element with probability ``rate``
    and scale the others by ``1 / (1 - rate)``; the identity in evaluate/predict."""

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if noise_shape is not None:
            raise ValueError("Dropout: noise_shape is not supported by minidl; drop whole "
                             "channels with a custom layer (F.dropout on a mask)")
        if seed is not None:
            raise ValueError("Dropout: seed= is not supported; minidl's masks follow "
                             "md.manual_seed (or keras.utils.set_random_seed)")
        self.rate = check_probability(rate, "rate", "Dropout")

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        return F.dropout(x, self.rate, self.training if training is None else training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, name={self.name!r}"


class Flatten(Layer):
    """(batch, ...) -> (batch, prod(...)), in the order Keras flattens: channels-last. With
    ``data_format='channels_first'`` the channels are moved last before flattening, as Keras
    does, so a Dense after Flatten sees the same order in either format."""

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = data_format_of(data_format, "Flatten")

    def forward(self, x: Tensor) -> Tensor:
        if self.data_format == "channels_first" and x.ndim > 2:
            x = F.permute(x, 0, *range(2, x.ndim), 1)
        return F.reshape(x, (x.shape[0], -1))


class Reshape(Layer):
    """(batch, ...) -> (batch, *target_shape); one entry may be -1."""

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_shape = tuple(int(s) for s in target_shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.reshape(x, (x.shape[0], *self.target_shape))


class Lambda(Layer):
    """Any function of Tensors (minidl ops) as a layer: ``Lambda(lambda x: x * 2)``."""

    def __init__(self, function: Callable[..., Any], output_shape: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function

    def forward(self, *xs: Any) -> Any:
        return self.function(*xs)
