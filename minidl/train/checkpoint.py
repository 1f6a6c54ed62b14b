"""Training-checkpoint files: save_checkpoint / load_checkpoint, written atomically."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .. import io
from ..autograd import Tensor

__all__ = ["save_checkpoint", "load_checkpoint"]

_FORMAT = "minidl-training-checkpoint"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a training state (nested dicts/lists of arrays, numbers, strings) atomically.

    Goes through :func:`minidl.io.save` (an ``.npz`` with a JSON record; temporary file, then
    rename), so Python ints of any size (RNG states) survive exactly and an interrupted save
    leaves the previous file intact.
    """
    io.save({"format": _FORMAT, **state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (arrays come back as NumPy arrays).

    Raises FileNotFoundError for a missing file and ValueError (``minidl.io.CheckpointError``
    for damaged files) for anything that is not a training checkpoint.
    """
    state = io.load(path)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"load_checkpoint: {path} is not a minidl training checkpoint (found "
                         f"{keys}...; a plain weights file loads with model.load_state_dict("
                         f"minidl.io.load(path)))")
    return state


def state_arrays(state: Any) -> Iterable[tuple[str, Any]]:
    """(name, array) pairs of a model state dict (values may be arrays or Tensors)."""
    for k, v in state.items():
        yield k, (v.data if isinstance(v, Tensor) else v)
