"""Normalisation layers: batch norm (1-D and 2-D), local response norm and the
fixed-statistics ``Normalization`` (Keras' layer, with ``adapt``)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_array_module, get_default_device, to_numpy, xp_for
from ..functional.validation import check_layer_input, positive_int
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm", "Normalization"]


class _BatchNorm(Module):
    _ndims: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 trainable: bool = True, name: str | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        super().__init__()
        num_features = positive_int(num_features, "num_features", type(self).__name__)
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
        param = self.weight if self.affine else self.running_mean
        if not isinstance(x, Tensor) or (param is not None and x.dtype != param.dtype):
            check_layer_input(x, param, f"{type(self).__name__}({self.num_features})")
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
        self.size = positive_int(size, "size", "LocalResponseNorm")
        self.alpha, self.beta, self.k = alpha, beta, k

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
