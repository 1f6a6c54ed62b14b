"""minidl: a deep-learning framework written from scratch on NumPy (CPU) and CuPy (GPU).

    >>> import minidl as md, minidl.functional as F
    >>> x = md.randn(4, 3, requires_grad=True)
    >>> F.tanh(x).sum().backward()
    >>> x.grad.shape
    (4, 3)

Heavy parts (cupy, the model zoo, the trainer, plotting) are imported lazily.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import functional
from .autograd import (
    Function,
    Tensor,
    detect_anomaly,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
    tensor,
)
from .backend import cupy_available, device, get_default_device, manual_seed, set_default_device
from .factories import arange, full, ones, ones_like, rand, randn, zeros, zeros_like
from .functional.shape import cat, split, stack
from .functional.tensor_methods import install_tensor_methods as _install_tensor_methods
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .parallel import get_num_threads, set_num_threads

__version__ = "0.1.0"

# The engine (autograd) sits below the ops, so the ops attach Tensor's operators from above.
_install_tensor_methods()

_LAZY_SUBMODULES = ("nn", "optim", "data", "models", "train", "keras", "flow", "summary", "viz",
                    "io", "kernels", "cli", "distributed")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minidl' has no attribute {name!r}")


__all__ = [
    "Function", "GradcheckError", "Tensor", "arange", "cat", "cupy_available", "detect_anomaly",
    "device", "enable_grad", "full", "functional", "get_default_device", "grad", "gradcheck",
    "get_num_threads", "gradgradcheck", "is_grad_enabled", "manual_seed", "no_grad", "ones",
    "ones_like", "rand", "randn", "set_default_device", "set_grad_enabled", "set_num_threads",
    "split", "stack", "tensor", "zeros",
    "zeros_like", "__version__",
]
