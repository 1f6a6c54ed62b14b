"""Sorting and selection along a dim, as torch has them: sort, argsort, topk, take_along_dim.

The values are gathered from the input at the chosen indices (an advanced index, so the
gradient flows back to exactly those elements, as in torch); the indices are int64 and carry
no gradient.

    >>> import minidl as md
    >>> values, indices = md.tensor([[3., 1., 2.]]).topk(2)
    >>> values.tolist(), indices.tolist()
    ([[3.0, 2.0]], [[0, 2]])
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..autograd import Tensor, as_tensor
from ..backend import get_array_module
from .reduction import _norm_axis
from .shape import getitem
from .validation import keywords


class SortResult(NamedTuple):
    """``(values, indices)`` of ``sort``, as ``torch.return_types.sort``."""

    values: Tensor
    indices: Tensor


class TopkResult(NamedTuple):
    """``(values, indices)`` of ``topk``, as ``torch.return_types.topk``."""

    values: Tensor
    indices: Tensor


def _dim(x: Tensor, dim: int, op: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    return _norm_axis(int(dim), x.ndim, op)[0] if x.ndim else 0


@keywords
def take_along_dim(x: Tensor, indices: Any, dim: int) -> Tensor:
    """``x`` gathered at ``indices`` along ``dim`` (``numpy.take_along_axis``): indices has
    x's number of dims and broadcasts against x elsewhere; differentiable in x."""
    x = as_tensor(x)
    idx = indices.data if isinstance(indices, Tensor) else indices
    xp = get_array_module(x.data)
    idx = xp.asarray(idx)
    if idx.ndim != x.ndim or idx.dtype.kind not in "iu":
        raise ValueError(f"take_along_dim: indices must be an integer tensor with {x.ndim} "
                         f"dims, got dtype {idx.dtype} and shape {tuple(idx.shape)}")
    d = _dim(x, dim, "take_along_dim")
    shape = np.broadcast_shapes(tuple(n if i != d else 1 for i, n in enumerate(x.shape)),
                                tuple(n if i != d else 1 for i, n in enumerate(idx.shape)))
    index = tuple(
        xp.broadcast_to(idx, shape[:d] + (idx.shape[d],) + shape[d + 1:]) if i == d else
        xp.arange(x.shape[i]).reshape([-1 if j == i else 1 for j in range(x.ndim)])
        for i in range(x.ndim))
    return getitem(x, index)


def _order(x: Tensor, d: int, descending: bool, stable: bool) -> Any:
    """Indices sorting ``x`` along ``d``, always stable (ties keep their order), NaN last
    ascending and first descending, as torch. Descending sorts the reversed keys ascending
    and reverses back: no negation, so no overflow at an integer's extreme."""
    xp = get_array_module(x.data)
    if not descending:
        return x.data.argsort(axis=d, kind="stable") if xp is np else x.data.argsort(axis=d)
    n = x.shape[d]
    rev = xp.flip(x.data, axis=d)
    up = rev.argsort(axis=d, kind="stable") if xp is np else rev.argsort(axis=d)
    return (n - 1) - xp.flip(up, axis=d)


@keywords
def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:
    """The values along ``dim`` in order and where they came from: ``(values, indices)``.
    Ties always keep their original order (so ``stable=True`` changes nothing); NaN sorts as
    the largest value (last ascending, first descending), as in torch."""
    x = as_tensor(x)
    d = _dim(x, dim, "sort")
    if x.ndim == 0:
        return SortResult(x, Tensor(get_array_module(x.data).zeros((), dtype=np.int64)))
    idx = _order(x, d, descending, stable).astype(np.int64)
    return SortResult(take_along_dim(x, idx, d), Tensor(idx))


@keywords
def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort ``x`` along ``dim`` (int64)."""
    return sort(x, dim, descending, stable).indices


@keywords
def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True,
         sorted: bool = True) -> TopkResult:  # noqa: A002 - torch's name
    """The ``k`` largest (``largest=False``: smallest) values along ``dim`` and their indices,
    largest first; the values' gradient goes to those elements."""
    x = as_tensor(x)
    d = _dim(x, dim, "topk")
    n = x.shape[d] if x.ndim else 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise ValueError(f"topk: k must be an int in [0, {n}] for dim {dim} of shape "
                         f"{x.shape}, got {k!r}")
    if x.ndim == 0:
        return TopkResult(x, Tensor(get_array_module(x.data).zeros((), dtype=np.int64)))
    idx = _order(x, d, largest, stable=True).astype(np.int64)
    idx = idx[tuple(slice(0, int(k)) if i == d else slice(None) for i in range(x.ndim))]
    return TopkResult(take_along_dim(x, idx, d), Tensor(idx))
