"""Import PyTorch / torchvision weights into minidl models.

The ImageNet models of the zoo name their parameters and buffers exactly as torchvision
does (``features.0.weight``, ``layer1.0.downsample.1.running_mean``, ...), so importing a
torchvision checkpoint is mostly reading the file: :func:`load_torch_state_dict` reads a dict
of arrays, an ``.npz``, a ``.safetensors`` file (with minidl's own reader, no package needed)
or a torch ``.pth`` (needs torch), normalises a few historical spellings of the keys, and
hands the result to ``Module.load_state_dict``, which checks every key and shape before it
changes anything.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .archive import CheckpointError, read_checkpoint

__all__ = ["load_torch_state_dict", "read_state_dict", "TORCH_CONVERSION_HINT"]

TORCH_CONVERSION_HINT = (
    "torch is not installed here. Convert the checkpoint once on a machine that has torch:\n"
    "    import torch, numpy as np\n"
    "    np.savez('weights.npz', **{k: v.numpy() for k, v in "
    "torch.load('weights.pth', map_location='cpu').items()})\n"
    "then call load_torch_state_dict(model, 'weights.npz')."
)

# torchvision's old DenseNet checkpoints spell 'denselayer1.norm1' as 'denselayer1.norm.1';
# torchvision fixes them with this same pattern when it loads them.
_DENSENET_OLD = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
    r"running_var|num_batches_tracked))$")


def _to_numpy(value: Any) -> Any:
    """torch tensors and minidl Tensors -> NumPy; arrays pass through."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy") \
            and type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    if hasattr(value, "data") and type(value).__module__.startswith("minidl"):
        return value.data
    return value


def read_state_dict(src: Mapping[str, Any] | str | os.PathLike) -> OrderedDict[str, Any]:
    """Read a state dict from a mapping, ``.npz``, ``.safetensors`` or torch ``.pth``/``.pt``.

    Returns an ordered ``{name: array}``. A checkpoint that wraps the weights
    (``{'state_dict': ...}`` or ``{'model': ...}``) is unwrapped.
    """
    if isinstance(src, Mapping):
        sd: Mapping[str, Any] = src
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise FileNotFoundError(f"load_torch_state_dict: no such file: {path}")
        suffix = path.suffix.lower()
        if suffix in (".npz", ".safetensors"):  # numpy's, safetensors' or minidl's own files
            sd = read_checkpoint(path, "load_torch_state_dict")
        elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
            try:
                import torch  # noqa: PLC0415 - optional dependency
            except ImportError:
                raise ImportError(TORCH_CONVERSION_HINT) from None
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
                    pickle.UnpicklingError) as e:
                raise CheckpointError(
                    f"load_torch_state_dict: {path} is not a readable torch checkpoint "
                    f"(corrupt or truncated? {type(e).__name__}: "
                    f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'}); "
                    f"download or export it again") from None
        else:
            raise ValueError(f"load_torch_state_dict: unknown file type {suffix!r} for {path}; "
                             f"use .npz, .safetensors or a torch .pth")
    else:
        raise TypeError(f"load_torch_state_dict: src must be a mapping or a path, got "
                        f"{type(src).__name__}")
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, Mapping) and isinstance(sd.get(wrapper), Mapping):
            sd = sd[wrapper]
    if not isinstance(sd, Mapping):
        raise ValueError(f"load_torch_state_dict: {src} holds a {type(sd).__name__}, not a "
                         f"state dict of name -> array")
    return OrderedDict((str(k), _to_numpy(v)) for k, v in sd.items())


def _normalise_keys(sd: Mapping[str, Any], own: set[str]) -> OrderedDict[str, Any]:
    """Undo DataParallel's 'module.' prefix and old DenseNet key spellings."""
    out: OrderedDict[str, Any] = OrderedDict()
    strip = bool(sd) and all(k.startswith("module.") for k in sd) and not any(
        k.startswith("module.") for k in own)
    for k, v in sd.items():
        if strip:
            k = k[len("module."):]
        m = _DENSENET_OLD.match(k)
        if m and k not in own:
            k = m.group(1) + m.group(2)
        out[k] = v
    return out


def load_torch_state_dict(model: Any, src: Mapping[str, Any] | str | os.PathLike,
                          strict: bool = True,
                          rename: Callable[[str], str | None] | None = None
                          ) -> tuple[list[str], list[str]]:
    """Load PyTorch/torchvision weights into ``model`` (in place).

    ``src`` is a dict of arrays (NumPy arrays or torch tensors), an ``.npz`` or
    ``.safetensors`` file, or a torch ``.pth`` (only if torch is importable; otherwise an
    ImportError gives the two-line conversion to ``.npz``). Keys follow torchvision's names;
    ``rename(key) -> new_key or None`` maps other spellings (None drops the key).
    ``num_batches_tracked`` entries the model does not have are ignored, and ones the
    checkpoint lacks (checkpoints older than torch 0.4.1) keep the model's value, as torch does.

    Every key and every shape is checked first; on any mismatch a ``StateDictError`` lists all
    of them and the model is left unchanged. Returns ``(missing_keys, unexpected_keys)``
    (both empty when ``strict=True`` succeeds).
    """
    own = model.state_dict(keep_vars=True)
    sd = read_state_dict(src)
    if rename is not None:
        renamed: OrderedDict[str, Any] = OrderedDict()
        for k, v in sd.items():
            new = rename(k)
            if new is not None:
                renamed[new] = v
        sd = renamed
    sd = _normalise_keys(sd, set(own))
    for k in [k for k in sd if k.endswith("num_batches_tracked") and k not in own]:
        del sd[k]
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = own[k].data.copy()
    return model.load_state_dict(sd, strict=strict)
