"""Keras's utilities that lecture code calls: ``set_random_seed``, ``to_categorical``."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import manual_seed
from ..backend import to_numpy as _to_numpy

__all__ = ["set_random_seed", "to_categorical"]


def set_random_seed(seed: int) -> None:
    """Seed minidl's generators (weights, dropout masks, shuffling) and NumPy's global one,
    as Keras seeds Python's, NumPy's and the backend's."""
    np.random.seed(seed)
    manual_seed(seed)


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """Class indices (N,) -> one-hot float32 rows (N, num_classes)."""
    y = np.asarray(_to_numpy(x)).astype(np.int64).reshape(-1)
    n = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.size and (y.min() < 0 or y.max() >= n):
        raise ValueError(f"to_categorical: labels must be in [0, {n}), got [{y.min()}, "
                         f"{y.max()}]")
    out = np.zeros((y.size, n), dtype=np.float32)
    out[np.arange(y.size), y] = 1.0
    return out
