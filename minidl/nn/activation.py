"""Activation layers, and ``get_activation``: the one table from activation names to layers.

``Identity`` is the 'linear' activation (and a placeholder for a removed layer); ``Lambda``
wraps any function of Tensors as a layer, which is what a callable activation becomes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..functional.validation import resolve_dim
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Identity",
           "Lambda", "get_activation"]


class ReLU(Module):
    """max(x, 0), elementwise. Any shape -> same shape.

    ``inplace=True`` (torch's option) is accepted and computed out of place: the same values
    and gradients, without overwriting the input.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace  # inplace: see ReLU

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace  # inplace: see ReLU

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Softmax(Module):
    """softmax along ``dim`` (torch's name; ``axis=`` is accepted too), default the last dim.
    Any shape -> same shape. torch's ``nn.Softmax()`` without a dim guesses one and warns;
    minidl uses the last."""

    def __init__(self, dim: int | None = None, *, axis: int | None = None) -> None:
        super().__init__()
        d = resolve_dim(type(self).__name__, dim, axis)
        if d is not None and (isinstance(d, bool) or not isinstance(d, int)):
            raise TypeError(f"{type(self).__name__}: dim must be an int, got {d!r}")
        self.dim = -1 if d is None else d

    @property
    def axis(self) -> int:
        """NumPy's name for :attr:`dim`."""
        return self.dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``dim`` (default last), computed stably."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, dim=self.dim)


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed classifier)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x


class Lambda(Module):
    """Wraps a function of Tensors as a layer: ``Lambda(lambda x: x * 2)``."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, *xs: Any) -> Any:
        return self.fn(*xs)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", "fn")


_ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax, "elu": ELU,
    "leaky_relu": LeakyReLU, "log_softmax": LogSoftmax, "linear": Identity,
}


def get_activation(activation: str | Module | Callable | None) -> Module | None:
    """A Module for ``activation``: a name ('relu', 'sigmoid', 'tanh', 'softmax', 'elu',
    'leaky_relu', 'log_softmax', 'linear'), a Module, a callable, or None."""
    if activation is None:
        return None
    if isinstance(activation, Module):
        return activation
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation.lower()]()
        except KeyError:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             f"{sorted(_ACTIVATIONS)}") from None
    if callable(activation):
        return Lambda(activation)
    raise TypeError(f"activation must be a name, a Module or a callable, got "
                    f"{type(activation).__name__}")
