"""Activation functions: ReLU and friends, the squashing sigmoid/tanh, softmax."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module
from .elementwise import clip, exp, where
from .reduction import sum


class ReLU(Function):
    def forward(self, x):
        y = get_array_module(x).maximum(x, 0)
        if self.needs_input_grad[0]:
            self.mask = x > 0
        return y

    def backward(self, gy):
        return gy * Tensor(self.mask.astype(gy.dtype))


class LeakyReLU(Function):
    def __init__(self, negative_slope: float) -> None:
        self.slope = negative_slope

    def forward(self, x):
        xp = get_array_module(x)
        positive = x > 0
        if self.needs_input_grad[0]:
            self.scale = xp.where(positive, 1, self.slope).astype(x.dtype)
        return xp.where(positive, x, x * self.slope)

    def backward(self, gy):
        return gy * Tensor(self.scale)


class ELU(Function):
    keep_inputs = (0,)

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def forward(self, x):
        xp = get_array_module(x)
        return xp.where(x > 0, x, self.alpha * (xp.exp(xp.minimum(x, 0)) - 1)).astype(x.dtype)

    def backward(self, gy):
        x = self.inputs[0]
        # alpha*e^x for x <= 0, written with ops so that it differentiates again
        return gy * where(x.data > 0, 1.0, exp(clip(x, max=0.0)) * self.alpha)


class Sigmoid(Function):
    keep_output = True

    def forward(self, x):
        xp = get_array_module(x)
        # e^min(x,0) / (1 + e^-|x|) is 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) for x < 0:
        # neither exp overflows, and the negative tail keeps full relative precision, where
        # 0.5*(1+tanh(x/2)) rounds to exactly 0 (sigmoid(-50) is 1.9e-22, not 0; plots of
        # vanishing gradients depend on it)
        return (xp.exp(xp.minimum(x, 0)) / (1 + xp.exp(-xp.abs(x)))).astype(x.dtype, copy=False)

    def backward(self, gy):
        y = self.output()
        return gy * y * (1 - y)


class Tanh(Function):
    keep_output = True

    def forward(self, x):
        return get_array_module(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1 - y * y)


class Softmax(Function):
    keep_output = True

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        e /= e.sum(axis=self.axis, keepdims=True)
        return e

    def backward(self, gy):
        y = self.output()
        gyy = gy * y
        return gyy - y * sum(gyy, axis=self.axis, keepdims=True)


class LogSoftmax(Function):
    keep_output = True

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, gy):
        y = self.output()
        return gy - exp(y) * sum(gy, axis=self.axis, keepdims=True)


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise; the gradient at 0 is 0."""
    return ReLU()(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, ``negative_slope * x`` otherwise."""
    return LeakyReLU(negative_slope)(x)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""
    return ELU(alpha)(x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), computed without overflow; its derivative is at most 1/4."""
    return Sigmoid()(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent; derivative 1 - tanh(x)^2."""
    return Tanh()(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the max for stability."""
    return Softmax(axis)(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) computed stably (log-sum-exp)."""
    return LogSoftmax(axis)(x)
