"""The shared base of the layers with weights (Linear, Conv2d, ConvTranspose2d).

Layers with weights take the Keras keywords ``weight_regularizer=``, ``bias_regularizer=``,
``weight_constraint=``, ``trainable=``, ``activation=`` and ``name=``. A regularizer is a
callable ``Tensor -> scalar Tensor`` (see ``minidl.optim.regularizers``), collected by
``Module.regularization_loss()``; a constraint is a callable ``array -> array`` applied by the
optimiser after each step (see ``minidl.optim.constraints``). Weights are initialised as in
torch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import get_default_device, xp_for
from ..functional.validation import check_layer_input
from . import init
from .activation import get_activation
from .module import Module, Parameter


def _empty(shape: tuple[int, ...], dtype: Any, device: str | None) -> Parameter:
    xp = xp_for(device or get_default_device())
    return Parameter(xp.zeros(shape, dtype=np.dtype(dtype or np.float32)))


class _WeightLayer(Module):
    """Shared Keras keywords of Linear/Conv layers: regularizers, constraint, trainable,
    activation, name."""

    weight: Parameter
    bias: Parameter | None

    def _build(self, weight_shape: tuple[int, ...], bias_size: int | None, dtype: Any,
               device: str | None, weight_regularizer: Callable | None,
               bias_regularizer: Callable | None, weight_constraint: Callable | None,
               trainable: bool, activation: Any, name: str | None) -> None:
        """Create ``weight`` (``weight_shape``) and ``bias`` (``(bias_size,)``; None for no
        bias), initialise them as torch does, and apply the Keras keywords."""
        self.weight = _empty(weight_shape, dtype, device)
        self.bias = None if bias_size is None else _empty((bias_size,), dtype, device)
        self._init_torch_default()
        self.weight.regularizer = weight_regularizer
        self.weight.constraint = weight_constraint
        if self.bias is not None:
            self.bias.regularizer = bias_regularizer
        elif bias_regularizer is not None:
            raise ValueError(f"{type(self).__name__}: bias_regularizer given but bias=False")
        self.activation = get_activation(activation)
        self.name = name
        if not trainable:
            self.freeze()

    def _check_input(self, x: Any) -> None:
        """A Tensor of the weights' dtype (torch raises for anything else); see
        :func:`~minidl.functional.validation.check_layer_input`."""
        if not isinstance(x, Tensor) or x.dtype != self.weight.dtype:  # the rare case: name it
            check_layer_input(x, self.weight, f"{type(self).__name__}({self.extra_repr()})")

    def _activate(self, y: Tensor) -> Tensor:
        return y if self.activation is None else self.activation(y)

    def _init_torch_default(self) -> None:
        """torch's default: kaiming_uniform(a=sqrt(5)) weight, U(+-1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def reset_parameters(self) -> None:
        """Re-initialise the weights with torch's defaults."""
        self._init_torch_default()

    def _reg_repr(self) -> str:
        out = ""
        if self.weight.regularizer is not None:
            out += f", weight_regularizer={self.weight.regularizer!r}"
        if self.weight.constraint is not None:
            out += f", weight_constraint={self.weight.constraint!r}"
        return out
