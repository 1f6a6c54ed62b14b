"""Files: minidl checkpoints (``.npz``, ``.safetensors``) written atomically, and PyTorch weights.

    >>> import os, tempfile, numpy as np, minidl
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> minidl.io.save({"w": np.ones((2, 3), np.float32), "epoch": 3}, path)
    >>> ckpt = minidl.io.load(path)
    >>> ckpt["w"].shape, ckpt["epoch"]
    ((2, 3), 3)
"""
from __future__ import annotations

from .archive import CheckpointError, load, read_safetensors, remove_stale_temporaries, save
from .torch_weights import TORCH_CONVERSION_HINT, load_torch_state_dict, read_state_dict

__all__ = ["CheckpointError", "TORCH_CONVERSION_HINT", "load", "load_torch_state_dict",
           "read_safetensors", "read_state_dict", "remove_stale_temporaries", "save"]
