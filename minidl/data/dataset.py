"""Datasets: anything with ``len()`` and ``[i]``; array-backed ones also gather whole batches."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module

__all__ = ["Dataset", "TensorDataset"]


class Dataset:
    """Base class: subclasses define ``__len__`` and ``__getitem__(i)`` -> a tuple of arrays.

    A subclass that can fetch many items at once may also define
    ``get_batch(indices) -> tuple of arrays`` (each with leading dimension ``len(indices)``);
    the DataLoader then uses it instead of one ``__getitem__`` call per item.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError


class TensorDataset(Dataset):
    """Equal-length arrays viewed as one dataset: item ``i`` is ``(a[i] for a in arrays)``.

    Accepts NumPy or CuPy arrays (or Tensors, whose ``.data`` is used). A dataset kept on the
    GPU is gathered there. ``get_batch(idx)`` does one fancy index per array, so a batch
    costs no Python work per item.

    >>> import numpy as np
    >>> ds = TensorDataset(np.zeros((5, 1, 2, 2)), np.arange(5))
    >>> len(ds), [a.shape for a in ds.get_batch(np.array([4, 0]))]
    (5, [(2, 1, 2, 2), (2,)])
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        arrays = tuple(a.data if isinstance(a, Tensor) else a for a in arrays)
        arrays = tuple(a if hasattr(a, "shape") else np.asarray(a) for a in arrays)
        for a in arrays:
            if a.ndim == 0:
                raise ValueError("TensorDataset: arrays need a leading (sample) dimension, got "
                                 "a 0-d array")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError("TensorDataset: arrays differ in length: "
                             + ", ".join(str(tuple(a.shape)) for a in arrays))
        self.arrays = arrays

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices: Any) -> tuple[Any, ...]:
        """Arrays of the items at ``indices`` (a 1-D integer array), one gather per array."""
        out = []
        for a in self.arrays:
            xp = get_array_module(a)
            out.append(a[xp.asarray(indices)])
        return tuple(out)
