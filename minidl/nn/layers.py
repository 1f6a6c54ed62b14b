"""Layers: thin Modules around ``minidl.functional``, with torch's arguments and initialisation.

Layers with weights (Linear, Conv2d, ConvTranspose2d) also take the Keras keywords
``weight_regularizer=``, ``bias_regularizer=``, ``weight_constraint=``, ``trainable=``,
``activation=`` and ``name=``. A regularizer is a callable ``Tensor -> scalar Tensor`` (see
``minidl.optim.regularizers``), collected by ``Module.regularization_loss()``; a constraint is
a callable ``array -> array`` applied by the optimiser after each step (see
``minidl.optim.constraints``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_array_module, get_default_device, to_numpy, xp_for
from . import init
from .module import Module, Parameter

__all__ = ["Linear", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d",
           "LocalResponseNorm", "Normalization", "Dropout", "Flatten", "Reshape", "ReLU",
           "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Identity", "Lambda",
           "get_activation"]

IntPair = int | tuple[int, int]


def _pair(v: IntPair, what: str, layer: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{layer}: {what} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _empty(shape: tuple[int, ...], dtype: Any, device: str | None) -> Parameter:
    xp = xp_for(device or get_default_device())
    return Parameter(xp.zeros(shape, dtype=np.dtype(dtype or np.float32)))


# ---- activations ------------------------------------------------------------------------

class ReLU(Module):
    """max(x, 0), elementwise. Any shape -> same shape."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

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
    """softmax along ``axis`` (default: last)."""

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``axis``, computed stably."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, axis=self.axis)


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


# ---- layers with weights ----------------------------------------------------------------

class _WeightLayer(Module):
    """Shared Keras keywords of Linear/Conv layers: regularizers, constraint, trainable,
    activation, name."""

    weight: Parameter
    bias: Parameter | None

    def _keras_options(self, weight_regularizer: Callable | None,
                       bias_regularizer: Callable | None, weight_constraint: Callable | None,
                       trainable: bool, activation: Any, name: str | None) -> None:
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
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = _empty((self.out_features, self.in_features), dtype, device)
        self.bias = _empty((self.out_features,), dtype, device) if bias else None
        self._init_torch_default()
        self._keras_options(weight_regularizer, bias_regularizer, weight_constraint,
                            trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): expected input "
                             f"of shape (..., {self.in_features}), got {tuple(x.shape)}")
        return self._activate(F.linear(x, self.weight, self.bias))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}" + self._reg_repr())


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]
                  ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(before, after) padding per spatial dim that keeps the size at stride 1."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out[0], out[1]


class Conv2d(_WeightLayer):
    """2-D convolution (cross-correlation, as in every framework).

    x: (N, in_channels, H, W) -> (N, out_channels, H', W') with
    ``H' = floor((H + 2*padding - dilation*(k-1) - 1) / stride) + 1``.
    weight (out_channels, in_channels/groups, kH, kW), initialised as in torch.
    ``padding`` may be an int, a pair, 'valid' (0) or 'same' (stride 1 only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair | str = 0, dilation: IntPair = 1,
                 groups: int = 1, bias: bool = True, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.dilation = _pair(dilation, "dilation", "Conv2d")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("Conv2d: padding='same' needs stride 1 (as in torch)")
            self.padding: Any = padding
        else:
            self.padding = _pair(padding, "padding", "Conv2d")
        self.weight = _empty((out_channels, in_channels // groups, *self.kernel_size), dtype,
                             device)
        self.bias = _empty((out_channels,), dtype, device) if bias else None
        self._init_torch_default()
        self._keras_options(weight_regularizer, bias_regularizer, weight_constraint,
                            trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}, "
                             f"kernel_size={self.kernel_size}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        padding = self.padding
        if padding == "valid":
            padding = 0
        elif padding == "same":
            (t, b), (left, r) = _same_padding(self.kernel_size, self.dilation)
            if t == b and left == r:
                padding = (t, left)
            else:  # an even kernel needs one more row/column after than before (as torch)
                x = F.pad(x, (left, r, t, b))
                padding = 0
        y = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=padding,
                     dilation=self.dilation, groups=self.groups)
        return self._activate(y)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + self._reg_repr()


class ConvTranspose2d(_WeightLayer):
    """Transposed convolution (the gradient of conv2d w.r.t. its input), for upsampling.

    x: (N, in_channels, H, W) -> (N, out_channels, H', W') with
    ``H' = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1``.
    weight (in_channels, out_channels/groups, kH, kW), initialised as in torch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                 groups: int = 1, bias: bool = True, dilation: IntPair = 1, *,
                 weight_regularizer: Callable | None = None,
                 bias_regularizer: Callable | None = None,
                 weight_constraint: Callable | None = None, trainable: bool = True,
                 activation: Any = None, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvTranspose2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size", "ConvTranspose2d")
        self.stride = _pair(stride, "stride", "ConvTranspose2d")
        self.padding = _pair(padding, "padding", "ConvTranspose2d")
        self.output_padding = _pair(output_padding, "output_padding", "ConvTranspose2d")
        self.dilation = _pair(dilation, "dilation", "ConvTranspose2d")
        self.weight = _empty((in_channels, out_channels // groups, *self.kernel_size), dtype,
                             device)
        self.bias = _empty((out_channels,), dtype, device) if bias else None
        self._init_torch_default()
        self._keras_options(weight_regularizer, bias_regularizer, weight_constraint,
                            trainable, activation, name)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d({self.in_channels}, {self.out_channels}, "
                             f"kernel_size={self.kernel_size}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride,
                               padding=self.padding, output_padding=self.output_padding,
                               groups=self.groups, dilation=self.dilation)
        return self._activate(y)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.bias is None:
            s += ", bias=False"
        return s + self._reg_repr()


# ---- pooling ----------------------------------------------------------------------------

class MaxPool2d(Module):
    """Max over kernel_size windows. (N, C, H, W) -> (N, C, H', W'); stride defaults to
    kernel_size."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode = ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}" + (", ceil_mode=True" if self.ceil_mode else ""))


class AvgPool2d(Module):
    """Mean over kernel_size windows. (N, C, H, W) -> (N, C, H', W')."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}")


class AdaptiveAvgPool2d(Module):
    """Average-pool to a fixed output size: (N, C, H, W) -> (N, C, *output_size)."""

    def __init__(self, output_size: IntPair) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C) (Keras' GlobalAveragePooling2D)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool2d: expected (N, C, H, W), got {tuple(x.shape)}")
        return F.mean(x, axis=(2, 3))


# ---- normalisation ----------------------------------------------------------------------

class _BatchNorm(Module):
    _ndims: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 trainable: bool = True, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        xp = xp_for(device or get_default_device())
        dt = np.dtype(dtype or np.float32)
        if affine:
            self.weight = Parameter(xp.ones(num_features, dtype=dt))
            self.bias = Parameter(xp.zeros(num_features, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(xp.zeros(num_features, dtype=dt)))
            self.register_buffer("running_var", Tensor(xp.ones(num_features, dtype=dt)))
            self.register_buffer("num_batches_tracked", Tensor(xp.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.name = name
        if not trainable:
            self.freeze()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, batch counter 0."""
        if self.track_running_stats:
            xp = get_array_module(self.running_mean.data)
            self.running_mean.data = xp.zeros_like(self.running_mean.data)
            self.running_var.data = xp.ones_like(self.running_var.data)
            self.num_batches_tracked.data = xp.zeros((), dtype=np.int64)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input of "
                             f"shape {self._layout}, got {tuple(x.shape)}")
        use_batch_stats = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data = self.num_batches_tracked.data + 1
            if self.momentum is None:  # cumulative moving average, as torch
                momentum = 1.0 / float(self.num_batches_tracked.data)
        return F.batch_norm(x, self.running_mean if self.track_running_stats else None,
                            self.running_var if self.track_running_stats else None,
                            self.weight, self.bias, training=use_batch_stats,
                            momentum=momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) inputs, per feature C.

    Training: normalise with the batch statistics and update the running ones
    (``running = (1-momentum)*running + momentum*batch``, unbiased variance); eval: use the
    running statistics. Buffers: running_mean, running_var, num_batches_tracked.
    """

    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) inputs, per channel C (see BatchNorm1d)."""

    _ndims = (4,)
    _layout = "(N, C, H, W)"


class LocalResponseNorm(Module):
    """AlexNet's local response normalisation across ``size`` neighbouring channels.

    ``b_c = a_c / (k + alpha/size * sum_{c' near c} a_{c'}^2) ** beta``; (N, C, ...) -> same.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75,
                 k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class Normalization(Module):
    """Fixed-statistics normalisation ``(x - mean) / std`` (Keras' ``Normalization`` layer).

    ``mean``/``std`` are scalars or per-feature sequences along ``axis`` (default 1: the
    feature axis of (N, F) and the channel axis of (N, C, H, W)); or call ``adapt(data)`` to
    compute them from data, per feature/channel, over every other axis. Statistics are
    buffers (saved in ``state_dict``), never trained. ``std`` is clamped below at ``eps``.
    """

    def __init__(self, mean: float | Sequence[float] | Any = None,
                 std: float | Sequence[float] | Any = None, axis: int | None = 1,
                 eps: float = 1e-7, *, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("Normalization: give both mean and std, or neither (then "
                             "call adapt(data))")
        self.axis, self.eps, self.name = axis, eps, name
        self._dtype = np.dtype(dtype or np.float32)
        self._device = device or get_default_device()
        if mean is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
        else:
            xp = xp_for(self._device)
            m = xp.asarray(to_numpy(getattr(mean, "data", mean)), dtype=self._dtype).reshape(-1)
            s = xp.asarray(to_numpy(getattr(std, "data", std)), dtype=self._dtype).reshape(-1)
            if m.shape != s.shape and m.size != 1 and s.size != 1:
                raise ValueError(f"Normalization: mean has {m.size} values but std has {s.size}")
            if bool((s < 0).any()):
                raise ValueError("Normalization: std must be non-negative")
            self.register_buffer("mean", Tensor(m))
            self.register_buffer("std", Tensor(s))

    def adapt(self, data: Any, batch_size: int | None = None) -> Normalization:
        """Compute per-feature mean and std (population, like Keras) from ``data``.

        ``data``: an array/Tensor of shape (N, ...), or an iterable of batches (arrays,
        Tensors, or ``(x, y)`` tuples, e.g. a DataLoader). Accumulated in float64.
        """
        if isinstance(data, Tensor) or hasattr(data, "shape"):
            batches: Iterable[Any] = [data]
        else:
            batches = data
        count, s1, s2 = 0, None, None
        for batch in batches:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            x = to_numpy(getattr(batch, "data", batch)).astype(np.float64)
            if self.axis is None:
                axes = tuple(range(x.ndim))
            else:
                ax = self.axis % x.ndim
                axes = tuple(a for a in range(x.ndim) if a != ax)
            n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
            b1, b2 = x.sum(axis=axes), (x * x).sum(axis=axes)
            if s1 is None:
                s1, s2 = b1, b2
            elif s1.shape != b1.shape:
                raise ValueError(f"Normalization.adapt: batches have {s1.shape} and "
                                 f"{b1.shape} features along axis {self.axis}")
            else:
                s1, s2 = s1 + b1, s2 + b2
            count += n
        if s1 is None or count == 0:
            raise ValueError("Normalization.adapt: no data")
        mean = s1 / count
        var = np.maximum(s2 / count - mean * mean, 0.0)
        xp = xp_for(self._device)
        self.mean = Tensor(xp.asarray(np.atleast_1d(mean), dtype=self._dtype))
        self.std = Tensor(xp.asarray(np.atleast_1d(np.sqrt(var)), dtype=self._dtype))
        return self

    def _shape_for(self, x: Tensor, n: int) -> tuple[int, ...]:
        if n == 1 or self.axis is None:
            return (1,) * x.ndim
        ax = self.axis % x.ndim
        if x.shape[ax] != n:
            raise ValueError(f"Normalization: statistics have {n} values but the input "
                             f"{tuple(x.shape)} has {x.shape[ax]} along axis {self.axis}")
        return tuple(n if a == ax else 1 for a in range(x.ndim))

    def compute_output_shape(self, shape: tuple) -> tuple:
        """Same shape (so a graph can be built before ``adapt``)."""
        return tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        if self.mean is None:
            raise RuntimeError("Normalization: no statistics; pass mean and std or call "
                               "adapt(data) first")
        xp = get_array_module(x.data)
        shape = self._shape_for(x, self.mean.size)
        mean = self.mean.data.reshape(shape).astype(x.dtype)
        std = xp.maximum(self.std.data, self.eps).reshape(shape).astype(x.dtype)
        return (x - Tensor(mean)) / Tensor(std)

    def extra_repr(self) -> str:
        if self.mean is None:
            return f"axis={self.axis}, not adapted"
        return f"features={self.mean.size}, axis={self.axis}"


# ---- regularisation and reshaping -------------------------------------------------------

class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; identity in eval."""

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.name = p, name

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Merge dims start_dim..end_dim: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)


class Reshape(Module):
    """Reshape each sample: (N, ...) -> (N, *shape) (Keras' Reshape; -1 allowed)."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.reshape(x, (x.shape[0], *self.shape))

    def extra_repr(self) -> str:
        return f"{self.shape}"

