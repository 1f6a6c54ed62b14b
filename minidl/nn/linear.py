"""The fully connected layer, ``Linear``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..functional.validation import positive_int
from .weight_layer import _WeightLayer

__all__ = ["Linear"]


class Linear(_WeightLayer):
    """Fully connected layer ``y = x @ W.T + b``.

    x: (..., in_features) -> (..., out_features). weight (out_features, in_features), bias
    (out_features,), initialised as in torch. Keras' ``Dense(units, activation=...)`` is
    ``Linear(in_features, units, activation=...)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        # torch allows 0 features (an empty weight: the output is the bias, or empty)
        self.in_features = positive_int(in_features, "in_features", "Linear", allow_zero=True)
        self.out_features = positive_int(out_features, "out_features", "Linear",
                                         allow_zero=True)
        self._build((self.out_features, self.in_features), self.out_features if bias else None,
                    dtype, device, weight_regularizer, bias_regularizer, weight_constraint,
                    trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): expected input "
                             f"of shape (..., {self.in_features}), got {tuple(x.shape)}")
        return self._activate(F.linear(x, self.weight, self.bias))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}" + self._reg_repr())
