"""Differentiable ops (``import minidl.functional as F``), one module per family.

Signatures follow ``torch`` and ``torch.nn.functional`` (``dim=``, ``keepdim=``); NumPy's
``axis=``, ``keepdims=`` and ``ddof=`` are accepted beside them with NumPy's meaning.
"""
from .activation import elu, leaky_relu, log_softmax, logsumexp, relu, sigmoid, softmax, tanh
from .conv import conv2d, conv_transpose2d
from .dropout import dropout
from .elementwise import (
    abs,
    add,
    astype,
    clamp,
    clip,
    clone,
    contiguous,
    div,
    exp,
    log,
    masked_fill,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    to_device,
    where,
)
from .linalg import linear, matmul, mm, norm
from .loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from .normalization import batch_norm, local_response_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d
from .reduction import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    broadcast_to,
    mean,
    prod,
    repeat,
    std,
    sum,
    sum_to,
    var,
)
from .shape import (
    cat,
    chunk,
    flatten,
    getitem,
    pad,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    transpose,
    unsqueeze,
)
from .sorting import argsort, sort, take_along_dim, topk
from .tensor_methods import torch_max as max  # noqa: A004 - torch.max: also max(a, b)
from .tensor_methods import torch_min as min  # noqa: A004

__all__ = [
    "all", "amax", "amin", "any", "argmin", "chunk", "clone", "contiguous", "logsumexp",
    "masked_fill", "mm", "norm", "prod", "repeat", "std", "argsort", "sort", "take_along_dim",
    "topk",
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "conv2d", "conv_transpose2d",
    "global_avg_pool2d", "local_response_norm", "max_pool2d",
    "abs", "add", "argmax", "astype", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "broadcast_to", "cat", "clamp", "clip", "cross_entropy", "div", "dropout", "elu", "exp",
    "flatten", "getitem", "leaky_relu", "linear", "log", "log_softmax", "matmul", "max",
    "maximum", "mean", "min", "minimum", "mse_loss", "mul", "neg", "nll_loss", "pad", "permute",
    "pow", "relu", "reshape", "sigmoid", "softmax", "split", "sqrt", "squeeze", "stack", "sub",
    "sum", "sum_to", "swapaxes", "tanh", "to_device", "transpose", "unsqueeze", "var", "where",
    "huber_loss", "l1_loss", "smooth_l1_loss",
]
