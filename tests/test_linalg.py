"""Linear algebra (minidl/functional/linalg.py): matmul in every batch/vector form, and linear.

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

# ---- matmul and linear ------------------------------------------------------------------

@st.composite
def matmul_shapes(draw):
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2,
                                                    max_side=2))
    ba, bb = batch.input_shapes
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    sa = (k,) if a_vec else ba + (m, k)
    sb = (k,) if b_vec else bb + (k, n)
    return sa, sb


@fixture_ok
@given(shapes=matmul_shapes(), seed=seeds)
def test_matmul(device, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    ta, tb = leaf(a, device), leaf(b, device)
    close(ta @ tb, np.matmul(a, b))
    assert md.gradcheck(F.matmul, ta, tb)


@pytest.mark.parametrize("sa, sb", [((2, 3), (3, 2)), ((2, 2, 3), (3, 2)), ((3,), (2, 3, 2)),
                                    ((2, 3), (3,)), ((3,), (3,)), ((2, 1, 2, 3), (2, 3, 1))])
def test_matmul_gradgradcheck(device, sa, sb):
    rng = np.random.default_rng(0)
    ta, tb = leaf(rng.standard_normal(sa), device), leaf(rng.standard_normal(sb), device)
    assert md.gradgradcheck(F.matmul, ta, tb)


def test_matmul_batched_and_vector_values(device):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((3, 5))
    ta, tb = leaf(a, device), leaf(b, device)
    (ta @ tb).sum().backward()
    # d/da sum(a @ b) = 1 @ b.T, the same for every batch item; d/db sums over the batch
    close(ta.grad, np.broadcast_to(np.ones((2, 5)) @ b.T, (4, 2, 3)))
    close(tb.grad, np.einsum("bik,bij->kj", a, np.ones((4, 2, 5))))
    v, w = leaf([1.0, 2.0, 3.0], device), leaf([4.0, 5.0, 6.0], device)
    dot = v @ w
    assert dot.shape == () and dot.item() == 32.0
    dot.backward()
    close(v.grad, [4, 5, 6])
    close(w.grad, [1, 2, 3])


def test_matmul_errors(device):
    a, b = leaf(np.ones((2, 3)), device), leaf(np.ones((4, 2)), device)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 2\)"):
        a @ b
    with pytest.raises(ValueError, match=r"matmul.*\(\)"):
        F.matmul(leaf(1.0, device), b)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 2, 3\).*\(3, 3, 1\)"):
        leaf(np.ones((2, 2, 3)), device) @ leaf(np.ones((3, 3, 1)), device)


@pytest.mark.parametrize("sx", [(3,), (2, 3), (2, 2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(device, sx, bias):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(sx), rng.standard_normal((4, 3)), rng.standard_normal(4)
    tx, tw, tb = leaf(x, device), leaf(w, device), leaf(b, device)
    inputs = (tx, tw, tb) if bias else (tx, tw)
    close(F.linear(*inputs), x @ w.T + (b if bias else 0))
    assert md.gradcheck(F.linear, *inputs)
    assert md.gradgradcheck(F.linear, *inputs)


def test_linear_errors(device):
    x, w = leaf(np.ones((2, 3)), device), leaf(np.ones((4, 5)), device)
    with pytest.raises(ValueError, match=r"linear.*\(2, 3\).*\(4, 5\)"):
        F.linear(x, w)
    with pytest.raises(ValueError, match=r"linear: bias of shape \(3,\)"):
        F.linear(x, leaf(np.ones((4, 3)), device), leaf(np.ones(3), device))
