"""Modules, layers, initialisers, graph nodes and the symbolic graph (Input, GraphModule).

    >>> import minidl.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [name for name, _ in net.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
"""
from . import init, utils
from .activation import (
    ELU,
    Identity,
    Lambda,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    get_activation,
)
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout, mc_predict
from .graph import Add, Concat, Residual
from .linear import Linear
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .module import Module, Parameter, StateDictError
from .normalization import BatchNorm1d, BatchNorm2d, LocalResponseNorm, Normalization
from .padding import (
    CircularPad2d,
    ConstantPad2d,
    ReflectionPad2d,
    ReplicationPad2d,
    ZeroPad2d,
)
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .reshape import Flatten, Reshape
from .symbolic import GraphModule, Input, SymbolicTensor
from .utils import clip_grad_norm_, clip_grad_value_, functional_call

__all__ = [
    "ELU", "AdaptiveAvgPool2d", "Add", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Concat",
    "Conv2d", "ConvTranspose2d", "Dropout", "Flatten", "GlobalAvgPool2d", "GraphModule",
    "Identity", "Input", "Lambda", "LeakyReLU", "Linear", "LocalResponseNorm", "LogSoftmax",
    "MaxPool2d", "Module", "ModuleDict", "ModuleList", "Normalization", "Parameter",
    "ReLU", "Reshape", "Residual", "Sequential", "Sigmoid", "Softmax", "StateDictError",
    "SymbolicTensor", "Tanh", "clip_grad_norm_", "clip_grad_value_", "functional_call",
    "get_activation", "init", "mc_predict", "utils",
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "L1Loss", "MSELoss",
    "NLLLoss", "SmoothL1Loss",
    "CircularPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d", "ZeroPad2d",
]

# Names that moved out of nn (which imports nothing from train or keras), and where to.
_MOVED = {"Model": "minidl.keras.Model (or minidl.nn.GraphModule, without compile/fit)",
          "History": "minidl.train.History"}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        raise AttributeError(f"minidl.nn.{name} has moved: use {_MOVED[name]}")
    raise AttributeError(f"module 'minidl.nn' has no attribute {name!r}")
