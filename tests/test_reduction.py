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


# ---- torch's spellings: dim=/keepdim=, unbiased var/std, max(dim) -> (values, indices) ------

@fixture_ok
@given(case=shape_and_axis(), seed=seeds)
def test_dim_keepdim_match_axis_keepdims(device, case, seed):
    shape, axis, keepdims = case
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    for name in ("sum", "mean", "amax", "amin", "prod"):
        ref = getattr(np, name)(x, axis=axis, keepdims=keepdims)
        close(getattr(tx, name)(dim=axis, keepdim=keepdims), ref)
        close(getattr(tx, name)(axis, keepdims), ref)
        close(getattr(F, name)(tx, axis=axis, keepdims=keepdims), ref)
    assert md.gradcheck(lambda t: t.prod(dim=axis, keepdim=keepdims), tx)


def test_var_and_std_are_unbiased_by_default_as_torch(device):
    x = np.random.default_rng(0).standard_normal((4, 5))
    tx = leaf(x, device)
    # the silent difference of old: x.var() was the population variance
    close(tx.var(), np.var(x, ddof=1))
    close(tx.std(), np.std(x, ddof=1))
    close(tx.var(1), np.var(x, axis=1, ddof=1))
    close(tx.var(dim=0, keepdim=True), np.var(x, axis=0, ddof=1, keepdims=True))
    close(tx.std(1, False), np.std(x, axis=1, ddof=0))        # torch: third positional is unbiased
    close(tx.std(1, True, True), np.std(x, axis=1, ddof=1, keepdims=True))
    close(tx.var(dim=1, correction=0), np.var(x, axis=1))
    close(tx.var(dim=1, correction=2), np.var(x, axis=1, ddof=2))
    close(tx.var(unbiased=False), np.var(x))
    # NumPy's spelling keeps NumPy's meaning: ddof=0 unless ddof= says otherwise
    close(tx.var(axis=1), np.var(x, axis=1))
    close(tx.var(axis=None), np.var(x))
    close(F.std(tx, axis=0, keepdims=True), np.std(x, axis=0, keepdims=True))
    close(tx.std(axis=1, ddof=1), np.std(x, axis=1, ddof=1))
    close(tx.std(dim=1, ddof=0), np.std(x, axis=1))
    with pytest.raises(TypeError, match="var: got correction= and ddof=; pass one"):
        tx.var(correction=1, ddof=1)
    with pytest.raises(TypeError, match="std: got both dim=0 and axis=1"):
        tx.std(dim=0, axis=1)
    assert md.gradcheck(lambda t: t.std(dim=1), tx)
    assert md.gradcheck(lambda t: F.std(t), tx)
    assert md.gradgradcheck(lambda t: t.std(0), tx)


def test_max_min_with_dim_return_values_and_indices(device):
    x = np.array([[1.0, 7.0, 3.0], [9.0, 2.0, 9.0]])
    tx = leaf(x, device)
    out = tx.max(1)
    assert isinstance(out, md.MaxResult) and out._fields == ("values", "indices")
    _, pred = tx.max(1)  # the idiom that was silently wrong
    np.testing.assert_array_equal(pred.numpy(), [1, 0])
    assert pred.dtype == np.int64
    close(out.values, [7.0, 9.0])
    values, indices = F.min(tx, dim=0, keepdim=True)
    close(values, x.min(axis=0, keepdims=True))
    np.testing.assert_array_equal(indices.numpy(), [[0, 1, 0]])
    assert isinstance(tx.min(0), md.MinResult)
    np.testing.assert_array_equal(tx.max(-1).indices.numpy(), x.argmax(axis=-1))
    # no dim: the value, as torch; NumPy's axis=: the values only, as numpy.max
    close(tx.max(), 9.0)
    close(tx.max(axis=1), x.max(axis=1))
    close(tx.max(dim=(0, 1)), 9.0)
    # the values' gradient goes to the index torch returns (the first of tied maxima)
    tx.max(1).values.sum().backward()
    close(tx.grad, [[0, 1, 0], [1, 0, 0]])
    y = leaf(np.random.default_rng(0).permutation(12).reshape(3, 4) * 0.5, device)
    assert md.gradcheck(lambda t: t.max(0).values, y)
    assert md.gradcheck(lambda t: t.min(dim=1, keepdim=True)[0], y)
    with pytest.raises(ValueError, match=r"max: cannot reduce an empty dim.*\(0, 3\)"):
        md.zeros(0, 3).max(0)
    zero_d = md.tensor(4.0).max(0)
    assert zero_d.values.item() == 4.0 and zero_d.indices.item() == 0


def test_argmax_argmin_any_all(device):
    x = np.array([[1.0, -7.0, 3.0], [0.0, 2.0, 9.0]])
    tx = leaf(x, device)
    np.testing.assert_array_equal(tx.argmax(dim=1).numpy(), x.argmax(1))
    np.testing.assert_array_equal(tx.argmin(1).numpy(), x.argmin(1))
    np.testing.assert_array_equal(tx.argmin(dim=0, keepdim=True).numpy(), [[1, 0, 0]])
    assert tx.argmax().item() == 5 and tx.argmin(axis=None).item() == 1
    np.testing.assert_array_equal(tx.any(dim=1).numpy(), x.any(axis=1))
    np.testing.assert_array_equal(tx.all(1).numpy(), x.all(axis=1))
    assert tx.any().item() is True and tx.all().item() is False
    assert F.all(tx > -8).item() and (tx > 0).any(0, keepdim=True).shape == (1, 3)
    assert tx.all().dtype == np.bool_


def test_prod_gradient_with_zeros(device):
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 4.0], [1.5, -2.0, 0.5]])
    tx = leaf(x, device)
    close(tx.prod(1), x.prod(axis=1))
    tx.prod(1).sum().backward()
    # d/dx_i prod = product of the others, also where x_i or another element is 0
    close(tx.grad, [[0, 6, 0], [0, 0, 0], [-1, 0.75, -3]])
    assert md.gradcheck(lambda t: t.prod(dim=1), tx)
    assert md.gradcheck(lambda t: t.prod(), leaf([[1.5, -2.0], [0.5, 3.0]], device))
    assert md.gradgradcheck(lambda t: t.prod(0), leaf([[1.5, -2.0], [0.5, 3.0]], device))
    assert md.gradgradcheck(lambda t: t.prod(1), tx)  # second derivatives at zeros too
    assert md.gradgradcheck(lambda t: t.prod(), leaf([[0.0, -2.0], [0.5, 0.0]], device))
    assert tx.prod(dtype=md.float32).dtype == np.float32


def test_logsumexp_and_norm(device):
    x = np.random.default_rng(1).standard_normal((3, 4)) * 3
    tx = leaf(x, device)
    ref = np.log(np.exp(x).sum(axis=1))
    close(tx.logsumexp(1), ref)
    close(F.logsumexp(tx, dim=1, keepdim=True), ref[:, None])
    close(tx.logsumexp(), np.log(np.exp(x).sum()))
    big = leaf([1000.0, 1000.0], device)
    close(big.logsumexp(0), 1000 + np.log(2))  # no overflow
    with np.errstate(divide="ignore"):  # log(0) = -inf is the answer here, not a mistake
        close(leaf([-np.inf, -np.inf], device).logsumexp(0), -np.inf)
    assert md.gradcheck(lambda t: t.logsumexp(dim=0), tx)
    assert md.gradgradcheck(lambda t: F.logsumexp(t, 1), tx)
    close(tx.norm(), np.linalg.norm(x))
    close(tx.norm(dim=1), np.linalg.norm(x, axis=1))
    close(F.norm(tx, p=1, dim=0), np.abs(x).sum(axis=0))
    close(F.norm(tx, 3, 1, True), (np.abs(x) ** 3).sum(axis=1, keepdims=True) ** (1 / 3))
    close(tx.norm(float("inf"), 1), np.abs(x).max(axis=1))
    close(tx.norm("fro"), np.linalg.norm(x))
    for p in (1, 2, 3, float("inf")):
        assert md.gradcheck(lambda t, p=p: F.norm(t, p, dim=1), tx)
    with pytest.raises(ValueError, match="norm: p must be a positive number"):
        tx.norm(0)
