"""Reductions (minidl/functional/reduction.py): sum, mean, var, max, min, and broadcast_to with
its adjoint sum_to.

Forward against NumPy, float64 gradcheck over all of an op's inputs on hypothesis-generated
shapes (tests/op_checks.py has the shared helpers).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_checks import close, fixture_ok, leaf, seeds

import minidl as md
import minidl.functional as F

# ---- ties: max/min split the gradient evenly ----------------------------------------------

def test_max_min_split_ties_evenly(device):
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], device)
    F.max(x, axis=1).sum().backward()
    close(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])

    x = leaf([[3.0, 1.0], [1.0, 3.0]], device)
    x.max().backward()  # the global max is tied twice
    close(x.grad, [[0.5, 0], [0, 0.5]])

    x = leaf([[1.0, 0.0, 1.0], [0.0, 5.0, 0.0]], device)
    F.min(x, axis=0, keepdims=True).backward(md.tensor([[1.0, 2.0, 4.0]], device=device))
    close(x.grad, [[0, 2, 0], [1, 0, 4]])
    x.grad = None
    x.min().backward()  # three tied zeros share one unit of gradient
    close(x.grad, [[0, 1 / 3, 0], [1 / 3, 0, 1 / 3]])


# ---- reductions -------------------------------------------------------------------------

@st.composite
def shape_and_axis(draw, min_side=1):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=min_side, max_side=4))
    nd = len(shape)
    axis = draw(st.one_of(
        st.none(),
        st.integers(-nd, nd - 1),
        st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple)))
    return shape, axis, draw(st.booleans())


@fixture_ok
@given(case=shape_and_axis(min_side=0), seed=seeds)
def test_sum(device, case, seed):
    shape, axis, keepdims = case
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    close(F.sum(tx, axis, keepdims), np.sum(x, axis=axis, keepdims=keepdims))
    assert md.gradcheck(lambda t: t.sum(axis=axis, keepdims=keepdims), tx)


@fixture_ok
@given(case=shape_and_axis(), seed=seeds, ddof=st.sampled_from([0, 1]))
def test_mean_and_var(device, case, seed, ddof):
    shape, axis, keepdims = case
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    close(tx.mean(axis=axis, keepdims=keepdims), np.mean(x, axis=axis, keepdims=keepdims))
    assert md.gradcheck(lambda t: F.mean(t, axis, keepdims), tx)
    n = x.size if axis is None else np.prod([shape[a] for a in np.atleast_1d(axis)])
    if n > ddof:
        close(F.var(tx, axis=axis, keepdims=keepdims, ddof=ddof),
              np.var(x, axis=axis, keepdims=keepdims, ddof=ddof))
        assert md.gradcheck(lambda t: F.var(t, axis=axis, keepdims=keepdims, ddof=ddof), tx)


@pytest.mark.parametrize("name", ["max", "min"])
@fixture_ok
@given(case=shape_and_axis(), seed=seeds)
def test_max_min(device, name, case, seed):
    shape, axis, keepdims = case
    # distinct values 0.5 apart: no ties, so the reduction is differentiable everywhere here
    x = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.5
    tx = leaf(x, device)
    op = getattr(F, name)
    close(op(tx, axis=axis, keepdims=keepdims),
          getattr(np, name)(x, axis=axis, keepdims=keepdims))
    assert md.gradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), tx)


def test_reductions_on_empty_and_errors(device):
    x = leaf(np.zeros((0, 3)), device)
    assert F.sum(x, axis=0).shape == (3,)
    assert F.max(x, axis=1).shape == (0,)  # nothing reduced is empty
    with pytest.raises(ValueError, match=r"max: .*\(0, 3\)"):
        F.max(x, axis=0)
    with pytest.raises(ValueError, match=r"min: .*\(0, 3\)"):
        F.min(x)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        F.sum(leaf(np.ones((2, 3)), device), axis=2)



def test_var_gradgradcheck(device):
    a = leaf(np.random.default_rng(0).uniform(0.5, 2, (2, 3)), device)
    assert md.gradgradcheck(lambda u: F.var(u, axis=0), a)

# ---- broadcast_to and its adjoint sum_to -------------------------------------------------

@fixture_ok
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=3), seed=seeds)
def test_broadcast_to_and_sum_to(device, shapes, seed):
    (src,), dst = shapes.input_shapes, shapes.result_shape
    x = np.random.default_rng(seed).standard_normal(src)
    tx = leaf(x, device)
    close(F.broadcast_to(tx, dst), np.broadcast_to(x, dst))
    assert md.gradcheck(lambda t: F.broadcast_to(t, dst), tx)
    big = leaf(np.random.default_rng(seed + 1).standard_normal(dst), device)
    reduced = F.sum_to(big, src)
    assert reduced.shape == src
    # sum_to is the adjoint of broadcast_to: <broadcast(x), y> == <x, sum_to(y)>
    lhs = float((np.broadcast_to(x, dst) * big.numpy()).sum())
    np.testing.assert_allclose(lhs, float((x * reduced.numpy()).sum()), atol=1e-9)
    assert md.gradcheck(lambda t: F.sum_to(t, src), big)


def test_broadcast_to_error(device):
    with pytest.raises(ValueError, match=r"broadcast_to.*\(2, 3\).*\(4, 3\)"):
        F.broadcast_to(leaf(np.ones((2, 3)), device), (4, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2,\)"):
        leaf(np.ones((2, 3)), device) + leaf(np.ones(2), device)
