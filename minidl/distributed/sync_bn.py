"""SyncBatchNorm: batch norm with the statistics of the global batch (all ranks' samples),
and convert_sync_batchnorm, which swaps it in for every BatchNorm of a model.

Forward: each rank sends its sample count, mean and sum of squared deviations per channel
(one sum over ranks of a (world, 2C+1) table, each rank filling its own row); every rank
combines the rows in rank order (Chan's parallel formula), so all get the same mean and
variance, and uneven local batches weigh by their size. Backward: one sum of the two
per-channel gradient sums, weighted like DDP weights the ranks' losses.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..nn.module import Module
from ..nn.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm
from .comm import Communicator
from .world import world

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]

_stats_comms: dict[int, Communicator] = {}


def _stats_comm(comm: Communicator) -> Communicator:
    """The communicator SyncBatchNorm uses (a duplicate of ``comm``, made once: its sums
    never interleave with DDP's buckets)."""
    if id(comm) not in _stats_comms:
        _stats_comms[id(comm)] = comm.dup()
    return _stats_comms[id(comm)]


def _reduce(comm: Communicator, array: Any) -> Any:
    if get_array_module(array) is not np:
        from .nccl import nccl_for  # noqa: PLC0415 - CUDA only

        nccl_for(comm, get_array_module(array)).allreduce(array)
    else:
        comm.allreduce(array)
    return array


def _axes(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def _channel(v: Any, ndim: int) -> Any:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class SyncBatchNormFunction(Function):
    """Training-mode batch norm of x (N, C, ...) with gamma, beta (C,) over the batches of
    every rank of ``comm``. After forward: ``mean``, ``var`` (biased) and ``count`` (values
    per channel over all ranks) of the global batch."""

    keep_inputs = (0, 1)

    def __init__(self, comm: Communicator, eps: float) -> None:
        self.comm, self.eps = comm, eps

    def forward(self, x, gamma, beta):
        xp = get_array_module(x)
        C, nd = x.shape[1], x.ndim
        m = x.size // C
        axes = _axes(nd)
        local_mean = x.sum(axis=axes, dtype=np.float64) / max(m, 1)
        dev = x - _channel(local_mean.astype(x.dtype), nd)
        local_m2 = (dev * dev).sum(axis=axes, dtype=np.float64)
        table = xp.zeros((self.comm.size, 2 * C + 1), dtype=np.float64)
        table[self.comm.rank, 0] = m
        table[self.comm.rank, 1:C + 1] = local_mean
        table[self.comm.rank, C + 1:] = local_m2
        _reduce(self.comm, table)               # every row from its rank, zeros elsewhere
        n, means, m2s = table[:, :1], table[:, 1:C + 1], table[:, C + 1:]
        total = float(n.sum())
        if total <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all "
                             f"ranks when training, got {int(total)} (input {tuple(x.shape)})")
        mean = (n * means).sum(axis=0) / total
        var = (m2s + n * (means - mean) ** 2).sum(axis=0) / total
        self.count, self.local_count = total, m
        self.mean, self.var = mean.astype(x.dtype), var
        self.inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype)
        scale = _channel(gamma * self.inv_std, nd)
        y = x - _channel(self.mean, nd)   # keeps x's memory layout (channels-last stays)
        y *= scale
        y += _channel(beta, nd)
        return y

    def backward(self, gy):
        x, gamma = self.inputs[0], self.inputs[1]
        return SyncBatchNormGrad(self)(x, gamma, gy)


class SyncBatchNormGrad(Function):
    """(x, gamma, gy) -> (dx, dgamma, dbeta) of :class:`SyncBatchNormFunction`.

    Rank r's ``gy`` is the gradient of its local loss, a mean over its share w = m_r / M
    of the global batch; the global loss is sum_r w_r loss_r. So the two global sums are
    of w * (local sums), and dx is returned for the local loss (divided by w), which DDP's
    weighting multiplies back. dgamma and dbeta are the local sums (DDP sums them).
    """

    keep_inputs = ()

    def __init__(self, fwd: SyncBatchNormFunction) -> None:
        self.fwd = fwd

    def forward(self, x, gamma, gy):
        f = self.fwd
        xp = get_array_module(x)
        C, nd = x.shape[1], x.ndim
        axes = _axes(nd)
        xhat = x - _channel(f.mean, nd)
        xhat *= _channel(f.inv_std, nd)
        gbeta = gy.sum(axis=axes)
        ggamma = (gy * xhat).sum(axis=axes)
        w = f.local_count / f.count
        sums = xp.concatenate([gbeta, ggamma]).astype(np.float64) * w
        _reduce(f.comm, sums)
        m = max(f.local_count, 1)
        c_beta = _channel((sums[:C] / m).astype(x.dtype), nd)
        c_gamma = _channel((sums[C:] / m).astype(x.dtype), nd)
        # dx = gamma/sigma * (gy - G_beta/m_r - xhat * G_gamma/m_r), in place on xhat
        xhat *= c_gamma
        xhat *= -1
        xhat += gy
        xhat -= c_beta
        xhat *= _channel(gamma * f.inv_std, nd)
        return xhat, ggamma.astype(gamma.dtype), gbeta.astype(gamma.dtype)

    def backward(self, *grads):
        raise RuntimeError("SyncBatchNorm: gradients of gradients (create_graph=True) are not "
                           "supported; use BatchNorm2d for double backward in one process")


class SyncBatchNorm(_BatchNorm):
    """Batch norm over (N, C, ...) whose training statistics are those of the global batch,
    the union of every rank's local batch (torch's ``nn.SyncBatchNorm``).

    With one process, or in eval mode, it is exactly :class:`~minidl.nn.BatchNorm2d`. With
    several ranks, training uses the mean and (biased) variance over all ranks' samples, the
    running statistics are updated with them (unbiased variance over the global count) and
    are identical on every rank, and gradients match one process on the global batch.
    Uneven local batches are weighted by their size. Every rank must call it together.
    """

    _ndims = (2, 3, 4, 5)
    _layout = "(N, C, ...)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 comm: Communicator | None = None, **kw: Any) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, **kw)
        self.comm = comm

    def forward(self, x: Tensor) -> Tensor:
        comm = self.comm or world()
        if not self.training or comm.size == 1:
            return super().forward(x)
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm({self.num_features}): expected input of shape "
                             f"(N, {self.num_features}, ...), got {tuple(x.shape)}")
        xp = get_array_module(x.data)
        C = self.num_features
        gamma = self.weight if self.weight is not None else Tensor(xp.ones(C, x.dtype))
        beta = self.bias if self.bias is not None else Tensor(xp.zeros(C, x.dtype))
        fn = SyncBatchNormFunction(_stats_comm(comm), self.eps)
        y = fn(x, gamma, beta)
        if self.track_running_stats:
            self.num_batches_tracked.data = self.num_batches_tracked.data + 1
            momentum = 1.0 / float(self.num_batches_tracked.data) if self.momentum is None \
                else self.momentum
            for buf, value in ((self.running_mean, fn.mean),
                               (self.running_var, fn.var * (fn.count / (fn.count - 1)))):
                buf.data *= 1 - momentum
                buf.data += momentum * value.astype(buf.dtype, copy=False)
        return y


def convert_sync_batchnorm(module: Module, comm: Communicator | None = None) -> Module:
    """Replace every BatchNorm1d/BatchNorm2d in ``module`` by a :class:`SyncBatchNorm` that
    shares its parameters and buffers (so optimisers built earlier still hold them); returns
    the module (a new one when ``module`` itself is a batch norm)."""
    if isinstance(module, (BatchNorm1d, BatchNorm2d)) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats, comm=comm)
        for name in ("weight", "bias"):
            sync._parameters[name] = module._parameters[name]
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            sync._buffers[name] = module._buffers[name]
        sync.training, sync.name = module.training, getattr(module, "name", None)
        return sync
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = convert_sync_batchnorm(child, comm)
    return module
