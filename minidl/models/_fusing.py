"""The zoo's blocks call batch norm + ReLU and add + ReLU through these: one fused node
(minidl.functional.fused, bitwise equal to the two modules) whenever that skips no hook."""
from __future__ import annotations

from ..autograd import Tensor
from ..functional.fused import add_relu as _fused_add_relu
from ..functional.fused import batch_norm_relu
from ..nn import BatchNorm2d, Module, ReLU


def unobserved(*modules: Module) -> bool:
    """Whether a fused call may stand in for these modules: no hook of theirs would be
    skipped (summary, flow recorders and user hooks see every module called as before)."""
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in modules)


def bn_relu(bn: Module, relu: Module, x: Tensor) -> Tensor:
    """``relu(bn(x))``: one fused node for a BatchNorm2d and a ReLU in training mode."""
    if not (type(bn) is BatchNorm2d and type(relu) is ReLU and bn.training
            and x.ndim == 4 and x.shape[1] == bn.num_features and unobserved(bn, relu)):
        return relu(bn(x))
    # what BatchNorm2d.forward does in training mode, with the ReLU fused in
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats:
        bn.num_batches_tracked.data = bn.num_batches_tracked.data + 1
        if bn.momentum is None:  # cumulative moving average, as torch
            momentum = 1.0 / float(bn.num_batches_tracked.data)
        return batch_norm_relu(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                               True, momentum, bn.eps)
    return batch_norm_relu(x, None, None, bn.weight, bn.bias, True, momentum, bn.eps)


def add_relu(relu: Module, y: Tensor, shortcut: Tensor) -> Tensor:
    """``relu(y + shortcut)``: one fused node when ``relu`` is a plain ReLU."""
    if type(relu) is ReLU and unobserved(relu):
        return _fused_add_relu(y, shortcut)
    return relu(y + shortcut)
