"""Sorting and selection (minidl/functional/sorting.py): sort, argsort, topk, take_along_dim,
checked against NumPy, with float64 gradchecks (distinct values, so no ties) and the tie rule."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra import numpy as hnp
from op_checks import close, fixture_ok, leaf, seeds

import minidl as md
import minidl.functional as F


@fixture_ok
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seed=seeds)
def test_sort_topk_match_numpy(device, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5  # distinct values
    tx = leaf(x, device)
    dim = int(rng.integers(-len(shape), len(shape)))
    values, indices = tx.sort(dim)
    close(values, np.sort(x, axis=dim))
    np.testing.assert_array_equal(indices.numpy(), np.argsort(x, axis=dim))
    close(F.sort(tx, dim, descending=True).values, np.flip(np.sort(x, axis=dim), axis=dim))
    np.testing.assert_array_equal(md.argsort(tx, dim=dim).numpy(), np.argsort(x, axis=dim))
    k = int(rng.integers(0, shape[dim] + 1))
    top = tx.topk(k, dim=dim)
    ref = np.take(np.flip(np.sort(x, axis=dim), axis=dim), range(k), axis=dim)
    close(top.values, ref)
    close(F.take_along_dim(tx, top.indices, dim), ref)
    low = tx.topk(k, dim, largest=False)
    close(low.values, np.take(np.sort(x, axis=dim), range(k), axis=dim))
    assert md.gradcheck(lambda t: t.sort(dim).values * t, tx)
    assert md.gradcheck(lambda t: t.topk(k, dim).values, tx)


def test_ties_keep_their_order_and_gradients_go_to_the_chosen(device):
    x = leaf([[2.0, 5.0, 2.0, 5.0]], device)
    np.testing.assert_array_equal(x.sort(1, stable=True).indices.numpy(), [[0, 2, 1, 3]])
    np.testing.assert_array_equal(x.sort(1, descending=True, stable=True).indices.numpy(),
                                  [[1, 3, 0, 2]])
    values, indices = x.topk(1)
    np.testing.assert_array_equal(indices.numpy(), [[1]])  # the first of the tied maxima
    values.sum().backward()
    close(x.grad, [[0, 1, 0, 0]])
    u = md.tensor(np.array([3, 200, 7], np.uint8), device=device)
    assert u.sort(descending=True).values.tolist() == [200, 7, 3]  # no unsigned wrap-around


def test_sorting_errors(device):
    x = leaf(np.ones((2, 3)), device)
    with pytest.raises(ValueError, match=r"topk: k must be an int in \[0, 3\]"):
        x.topk(4)
    with pytest.raises(ValueError, match="sort: axis 2 is out of range"):
        x.sort(2)
    with pytest.raises(ValueError, match="take_along_dim: indices must be an integer tensor"):
        F.take_along_dim(x, md.zeros(2, 1, device=device), 1)
    with pytest.raises(TypeError, match="topk: unknown keyword largest_first="):
        x.topk(1, largest_first=True)


def test_nan_integer_extremes_and_ties_sort_as_in_torch():
    """NaN is the largest value (last ascending, first descending), integers at their extreme
    do not overflow, and ties keep their order in both directions (torch's stable sort)."""
    x = md.tensor(np.array([3.0, np.nan, 1.0, 5.0, 3.0]))
    up, down = md.sort(x), md.sort(x, descending=True)
    np.testing.assert_array_equal(up.values.numpy(), [1, 3, 3, 5, np.nan])
    np.testing.assert_array_equal(up.indices.numpy(), [2, 0, 4, 3, 1])
    np.testing.assert_array_equal(down.values.numpy(), [np.nan, 5, 3, 3, 1])
    np.testing.assert_array_equal(down.indices.numpy(), [1, 3, 0, 4, 2])
    np.testing.assert_array_equal(md.topk(x, 2).values.numpy(), [np.nan, 5])
    big = md.tensor(np.array([5, -2**63, 0, 5], dtype=np.int64))
    np.testing.assert_array_equal(md.sort(big, descending=True).values.numpy(),
                                  [5, 5, 0, -2**63])
    np.testing.assert_array_equal(md.sort(big, descending=True).indices.numpy(), [0, 3, 2, 1])
