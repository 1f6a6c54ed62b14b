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
from pathlib import Path
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
from .factories import (
    arange,
    as_tensor,
    bool_,
    empty,
    empty_like,
    eye,
    float16,
    float32,
    float64,
    from_numpy,
    full,
    full_like,
    int8,
    int16,
    int32,
    int64,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    uint8,
    zeros,
    zeros_like,
)
from .functional.reduction import MaxResult, MinResult
from .functional.shape import cat, split, stack
from .functional.tensor_methods import Size
from .functional.tensor_methods import install_tensor_methods as _install_tensor_methods
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .parallel import get_num_threads, set_num_threads

__version__ = "0.1.0"

# The engine (autograd) sits below the ops, so the ops attach Tensor's operators from above.
_install_tensor_methods()


def save(obj: Any, f: Any) -> None:
    """``torch.save`` for minidl: a state dict, an optimizer's state, a Tensor or any nesting of
    dicts, lists and numbers of them, written atomically by :func:`minidl.io.save` (an
    ``.npz`` archive under exactly the name given, e.g. ``"model.pt"``; no pickle).

        >>> import os, tempfile, minidl as md
        >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
        >>> model = md.nn.Linear(3, 2)
        >>> md.save(model.state_dict(), path)
        >>> model.load_state_dict(md.load(path))
        ([], [])
    """
    from .io import save as io_save  # noqa: PLC0415 - io sits above the engine; import it late

    io_save(obj, f)


def load(f: Any, map_location: str | None = None, weights_only: bool | None = None) -> Any:
    """``torch.load`` for files written by :func:`save`: the saved structure, with Tensors
    (on ``map_location``, else the default device) where arrays were saved.

    minidl never unpickles (``weights_only`` is accepted and always in effect): a file
    written by ``torch.save`` raises an error that says how to convert it.
    """
    from .io import archive  # noqa: PLC0415 - io sits above the engine; import it late

    path = Path(f)
    _refuse_torch_pickle(path, archive.CheckpointError)
    device_name = map_location or get_default_device()

    def tensors(obj: Any) -> Any:
        if hasattr(obj, "dtype") and hasattr(obj, "shape"):
            return tensor(obj, device=device_name)
        if isinstance(obj, dict):
            return {k: tensors(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(tensors(v) for v in obj)
        return obj
    return tensors(archive.load(path))


def _refuse_torch_pickle(path: Any, error: type) -> None:
    """Raise ``error`` if ``path`` is a torch.save file (a zip with data.pkl, or a raw pickle)."""
    import zipfile  # noqa: PLC0415 - only load needs it

    if not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(2)
    torch_zip = False
    if head == b"PK":
        try:
            with zipfile.ZipFile(path) as z:
                torch_zip = any(n.endswith("data.pkl") for n in z.namelist())
        except zipfile.BadZipFile:
            return
    if torch_zip or head[:1] == b"\x80":
        raise error(f"load: {path} was written by torch.save (a pickle), which minidl does "
                    "not read; convert it once where torch is installed: np.savez('w.npz', "
                    "**{k: v.numpy() for k, v in torch.load(path).items()}), then md.load("
                    "'w.npz') (or minidl.io.load_torch_state_dict(model, 'w.npz'))")


_LAZY_SUBMODULES = ("nn", "optim", "data", "models", "train", "keras", "flow", "summary", "viz",
                    "io", "kernels", "cli", "distributed")


# torch's top-level ops (torch.sum, torch.max(x, 1), torch.exp, ...): minidl.functional's, looked
# up on use so that names such as sum, max and abs never shadow the builtins in this module.
_TORCH_FUNCTIONS = frozenset((
    "abs", "add", "all", "amax", "amin", "any", "argmax", "argmin", "chunk", "clamp", "clip",
    "clone", "div", "exp", "flatten", "log", "log_softmax", "logsumexp", "masked_fill", "matmul",
    "max", "maximum", "mean", "min", "minimum", "mm", "mul", "neg", "norm", "permute", "pow",
    "prod", "relu", "repeat", "reshape", "sigmoid", "softmax", "sqrt", "squeeze", "std", "sub",
    "sum", "swapaxes", "tanh", "transpose", "unsqueeze", "var", "where", "sort", "argsort",
    "topk", "take_along_dim"))


_BUILTIN_NAMED_DTYPES = {"float": float32, "int": int32, "bool": bool_}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _TORCH_FUNCTIONS:
        return getattr(functional, name)
    if name in _BUILTIN_NAMED_DTYPES:
        return _BUILTIN_NAMED_DTYPES[name]
    raise AttributeError(f"module 'minidl' has no attribute {name!r}")


__all__ = [
    "Function", "GradcheckError", "MaxResult", "MinResult", "Size", "Tensor", "arange",
    "as_tensor", "bool_", "cat", "cupy_available", "detect_anomaly", "device", "empty",
    "empty_like", "enable_grad", "eye", "float16", "float32", "float64", "from_numpy", "full",
    "full_like", "functional", "get_default_device", "get_num_threads", "grad", "gradcheck",
    "gradgradcheck", "int16", "int32", "int64", "int8", "is_grad_enabled", "linspace", "load",
    "manual_seed", "no_grad", "ones", "ones_like", "rand", "rand_like", "randint",
    "randint_like", "randn", "randn_like", "randperm", "save", "set_default_device",
    "set_grad_enabled", "set_num_threads", "split", "stack", "tensor", "uint8", "zeros",
    "zeros_like", "__version__",
]

# torch's dtype aliases. md.float / md.int / md.bool are looked up on use (see __getattr__):
# as globals they would shadow Python's float, int and bool in this module, and they stay out
# of __all__ so that ``from minidl import *`` cannot replace the builtins either.
double, half, long = float64, float16, int64
