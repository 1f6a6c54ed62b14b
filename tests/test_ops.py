"""Elementwise, reduction, linear-algebra, shape, indexing and join ops (minidl/functional/).

Every differentiable op: forward against NumPy, float64 gradcheck over all of its inputs on
hypothesis-generated shapes (broadcasting pairs, size-1 and, where it makes sense, empty
dimensions). Inputs are drawn away from kinks (|x| at 0, ties in max/min) on purpose; the
tie-breaking rule is tested on its own.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minidl as md
import minidl.functional as F

# `device` is a function-scoped fixture holding only a name, so reusing it across the
# examples of one hypothesis test is safe.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**16)


def leaf(a, device, requires_grad=True):
    """A float64 leaf on ``device``."""
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=requires_grad)


def values(kind, shape, rng):
    """Test values of a given kind: 'any' (normal), 'pos' (in [0.5, 2]), 'nonzero' (|x| in
    [0.5, 2]), 'grid' (multiples of 0.5) and 'offgrid' (multiples of 0.5 plus 0.25): a grid
    value and an off-grid value are never within 0.25 of each other, so max/min never tie."""
    if kind == "any":
        return rng.standard_normal(shape)
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nonzero":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    k = rng.integers(-4, 5, shape) * 0.5
    return k if kind == "grid" else k + 0.25


def close(t, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(t.numpy(), expected, rtol=rtol, atol=atol)


# ---- elementwise binary ops with broadcasting ---------------------------------------------

BINARY = {
    # name: (minidl op, NumPy reference, value kind of a, value kind of b)
    "add": (lambda a, b: a + b, np.add, "any", "any"),
    "sub": (lambda a, b: a - b, np.subtract, "any", "any"),
    "mul": (lambda a, b: a * b, np.multiply, "any", "any"),
    "div": (lambda a, b: a / b, np.divide, "any", "nonzero"),
    "pow": (lambda a, b: a ** b, np.power, "pos", "any"),
    "maximum": (F.maximum, np.maximum, "grid", "offgrid"),
    "minimum": (F.minimum, np.minimum, "offgrid", "grid"),
}


@pytest.mark.parametrize("name", list(BINARY))
@fixture_ok
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=3), seed=seeds)
def test_binary_broadcasting(device, name, shapes, seed):
    op, ref, ka, kb = BINARY[name]
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a, b = values(ka, sa, rng), values(kb, sb, rng)
    ta, tb = leaf(a, device), leaf(b, device)
    out = op(ta, tb)
    assert out.shape == shapes.result_shape
    close(out, ref(a, b))
    assert md.gradcheck(op, ta, tb)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow"])
def test_binary_with_python_scalars(device, name):
    rng = np.random.default_rng(0)
    a = values("pos", (2, 3), rng)
    ta = leaf(a, device)
    forward = {"add": lambda x: (x + 2.5, 2.5 + x), "sub": lambda x: (x - 2.5, 2.5 - x),
               "mul": lambda x: (x * 2.5, 2.5 * x), "div": lambda x: (x / 2.5, 2.5 / x),
               "pow": lambda x: (x ** 2.5, 2.5 ** x)}[name]
    ref = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "pow": np.power}[name]
    left, right = forward(ta)
    close(left, ref(a, 2.5))
    close(right, ref(2.5, a))
    assert left.dtype == right.dtype == np.float64  # the scalar took the tensor's dtype
    assert md.gradcheck(lambda x: forward(x)[0], ta)
    assert md.gradcheck(lambda x: forward(x)[1], ta)


def test_scalar_keeps_float32():
    x = md.tensor([1.0, 2.0])
    assert (x * 0.5).dtype == (0.5 + x).dtype == (x ** 2).dtype == np.float32


def test_mixed_float_precisions_promote_and_grads_keep_each_dtype(device):
    a = md.tensor(np.ones(3, np.float32), device=device, requires_grad=True)
    b = md.tensor(np.full(3, 2.0), device=device, requires_grad=True)
    y = a * b
    assert y.dtype == np.float64
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    close(a.grad, np.full(3, 2.0))


# ---- elementwise unary ops ----------------------------------------------------------------

UNARY = {
    # name: (minidl op, NumPy reference, value kind)
    "neg": (lambda x: -x, np.negative, "any"),
    "exp": (F.exp, np.exp, "any"),
    "log": (F.log, np.log, "pos"),
    "sqrt": (F.sqrt, np.sqrt, "pos"),
    "abs": (F.abs, np.abs, "nonzero"),
    "abs_method": (lambda x: abs(x), np.abs, "nonzero"),
    "clip": (lambda x: F.clip(x, -0.3, 0.7), lambda x: np.clip(x, -0.3, 0.7), "offgrid"),
    "clip_lo": (lambda x: x.clip(min=0.1), lambda x: np.maximum(x, 0.1), "offgrid"),
    "clamp_hi": (lambda x: F.clamp(x, max=-0.1), lambda x: np.minimum(x, -0.1), "offgrid"),
}


@pytest.mark.parametrize("name", list(UNARY))
@fixture_ok
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), seed=seeds)
def test_unary(device, name, shape, seed):
    op, ref, kind = UNARY[name]
    x = values(kind, shape, np.random.default_rng(seed))
    tx = leaf(x, device)
    close(op(tx), ref(x))
    assert md.gradcheck(op, tx)


def test_clip_gradient_is_a_mask(device):
    x = leaf([-2.0, -0.5, 0.0, 0.5, 2.0], device)
    F.clip(x, -1.0, 1.0).sum().backward()
    close(x.grad, [0, 1, 1, 1, 0])


def test_abs_gradient_is_sign(device):
    x = leaf([-2.0, 0.0, 3.0], device)
    F.abs(x).sum().backward()
    close(x.grad, [-1, 0, 1])


@fixture_ok
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                 max_side=3), seed=seeds)
def test_where(device, xp, shapes, seed):
    rng = np.random.default_rng(seed)
    sc, sa, sb = shapes.input_shapes
    cond = rng.random(sc) < 0.5
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    ta, tb = leaf(a, device), leaf(b, device)
    c = xp.asarray(cond)
    close(F.where(c, ta, tb), np.where(cond, a, b))
    assert md.gradcheck(lambda u, v: F.where(c, u, v), ta, tb)
    # a boolean Tensor works as the condition too, and so do scalars
    close(F.where(md.tensor(c), ta, 0.0), np.where(cond, a, 0.0))


def test_where_routes_gradient(device, xp):
    a, b = leaf([1.0, 2.0, 3.0], device), leaf([10.0], device)
    F.where(xp.asarray([True, False, True]), a, b).sum().backward()
    close(a.grad, [1, 0, 1])
    close(b.grad, [1])  # broadcast input: gradients sum


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


def test_maximum_minimum_split_ties_evenly(device):
    a, b = leaf([1.0, 2.0, 3.0], device), leaf([1.0, 5.0, 0.0], device)
    F.maximum(a, b).sum().backward()
    close(a.grad, [0.5, 0, 1])
    close(b.grad, [0.5, 1, 0])
    a.grad = b.grad = None
    F.minimum(a, b).sum().backward()
    close(a.grad, [0.5, 1, 0])
    close(b.grad, [0.5, 0, 1])


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
        close(F.var(tx, axis, keepdims, ddof=ddof),
              np.var(x, axis=axis, keepdims=keepdims, ddof=ddof))
        assert md.gradcheck(lambda t: F.var(t, axis, keepdims, ddof=ddof), tx)


@pytest.mark.parametrize("name", ["max", "min"])
@fixture_ok
@given(case=shape_and_axis(), seed=seeds)
def test_max_min(device, name, case, seed):
    shape, axis, keepdims = case
    # distinct values 0.5 apart: no ties, so the reduction is differentiable everywhere here
    x = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.5
    tx = leaf(x, device)
    op = getattr(F, name)
    close(op(tx, axis, keepdims), getattr(np, name)(x, axis=axis, keepdims=keepdims))
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


# ---- shape ops --------------------------------------------------------------------------

@fixture_ok
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3), seed=seeds,
       data=st.data())
def test_reshape_and_permute(device, shape, seed, data):
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    close(tx.reshape(-1), x.reshape(-1))
    assert md.gradcheck(lambda t: t.reshape(-1), tx)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    close(tx.permute(*perm) if perm else F.permute(tx, perm), np.transpose(x, perm))
    assert md.gradcheck(lambda t: F.transpose(t, perm), tx)
    close(tx.T, x.T)
    assert md.gradcheck(lambda t: t.T, tx)


@fixture_ok
@given(shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3), seed=seeds)
def test_flatten_squeeze_unsqueeze_swapaxes(device, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    close(F.flatten(tx), x.reshape(shape[0], -1))
    close(tx.flatten(0, -1), x.reshape(-1))
    close(F.unsqueeze(tx, -1), x[..., None])
    close(tx.unsqueeze(0).squeeze(0), x)
    close(F.squeeze(tx), np.squeeze(x))
    close(F.swapaxes(tx, 0, -1), np.swapaxes(x, 0, -1))
    assert md.gradcheck(lambda t: F.squeeze(F.swapaxes(F.flatten(F.unsqueeze(t, 1)), 0, 1)), tx)


def test_squeeze_and_reshape_errors(device):
    x = leaf(np.ones((2, 3)), device)
    with pytest.raises(ValueError, match=r"squeeze: axis 1 of shape \(2, 3\) has size 3"):
        F.squeeze(x, 1)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 0)


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


# ---- indexing ---------------------------------------------------------------------------

INDICES = {
    "int": 1,
    "negative_int": -1,
    "reversed_slice": slice(None, None, -2),
    "ellipsis": (Ellipsis, 1),
    "newaxis": (None, 0, slice(1, 3)),
    "int_array_with_repeats": [0, 2, 0, 0],
    "2d_int_array": np.array([[0, 1], [1, 0], [2, 2]]),
    "paired_arrays": ([0, 2, 2], [1, 1, 3]),
    "slice_then_array": (slice(None), [3, 3, 0]),
    "array_slice_array": ([1, 1], slice(None), [0, 1]),
    "bool_mask": np.array([True, False, True]),
    "bool_mask_2d": np.array([[True, False, True, False]] * 3),
    "empty_array": np.array([], dtype=np.int64),
}


@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(device, xp, name):
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    index = INDICES[name]
    dev_index = tuple(xp.asarray(i) if isinstance(i, (list, np.ndarray)) else i
                      for i in index) if isinstance(index, tuple) else \
        xp.asarray(index) if isinstance(index, (list, np.ndarray)) else index
    tx = leaf(x, device)
    y = tx[dev_index]
    close(y, x[index])
    assert md.gradcheck(lambda t: t[dev_index], tx)
    assert md.gradgradcheck(lambda t: t[dev_index] * t[dev_index], tx)
    # the gradient of sum(x[index] * g) scatter-adds g into x's shape
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(md.tensor(g, device=device))
    expected = np.zeros_like(x)
    np.add.at(expected, index, g)
    close(tx.grad, expected)


def test_getitem_repeated_indices_accumulate(device, xp):
    x = leaf([10.0, 20.0, 30.0], device)
    y = x[xp.asarray([0, 0, 2, 0])]
    close(y, [10, 10, 30, 10])
    y.backward(md.tensor([1.0, 2.0, 3.0, 4.0], device=device))
    close(x.grad, [7, 0, 3])  # 1 + 2 + 4 into slot 0, not the last write only
    x2 = leaf(np.zeros((2, 2)), device)
    x2[xp.asarray([1, 1]), xp.asarray([0, 0])].sum().backward()
    close(x2.grad, [[0, 0], [2, 0]])


@fixture_ok
@given(n=st.integers(1, 4), m=st.integers(1, 3), seed=seeds, data=st.data())
def test_getitem_random_int_arrays(device, xp, n, m, seed, data):
    # negative and repeated indices included
    index = np.array(data.draw(st.lists(st.integers(-n, n - 1), max_size=6)), dtype=np.int64)
    x = np.random.default_rng(seed).standard_normal((n, m))
    tx = leaf(x, device)
    close(tx[xp.asarray(index)], x[index])
    assert md.gradcheck(lambda t: t[xp.asarray(index)], tx)


def test_getitem_with_tensor_index(device):
    x = leaf(np.arange(6.0).reshape(3, 2), device)
    idx = md.tensor([2, 0, 2], device=device)
    close(x[idx], [[4, 5], [0, 1], [4, 5]])
    x[idx].sum().backward()
    close(x.grad, [[1, 1], [0, 0], [2, 2]])


def test_getitem_out_of_range(device):
    with pytest.raises(IndexError, match=r"getitem.*\(3,\)"):
        leaf([1.0, 2.0, 3.0], device)[5]


# ---- joins ------------------------------------------------------------------------------

@fixture_ok
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), seed=seeds,
       data=st.data())
def test_cat_and_stack(device, shape, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    parts = []
    for k in sizes:
        s = list(shape)
        s[axis] = k
        parts.append(rng.standard_normal(s))
    ts = [leaf(p, device) for p in parts]
    close(md.cat(ts, axis=axis), np.concatenate(parts, axis=axis))
    assert md.gradcheck(lambda *xs: md.cat(list(xs), axis=axis), *ts)
    same = [leaf(rng.standard_normal(shape), device) for _ in range(len(sizes))]
    new_axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    close(md.stack(same, axis=new_axis), np.stack([t.numpy() for t in same], axis=new_axis))
    assert md.gradcheck(lambda *xs: md.stack(list(xs), axis=new_axis), *same)


@fixture_ok
@given(n=st.integers(1, 6), k=st.integers(1, 4), seed=seeds)
def test_split(device, n, k, seed):
    x = np.random.default_rng(seed).standard_normal((2, n))
    tx = leaf(x, device)
    pieces = md.split(tx, k, axis=1)
    expected = np.split(x, list(range(k, n, k)), axis=1)
    assert len(pieces) == len(expected)
    for p, e in zip(pieces, expected):
        close(p, e)
    assert md.gradcheck(lambda t: md.split(t, k, axis=1), tx)
    sections = [1, n - 1] if n > 1 else [1]
    assert [p.shape for p in F.split(tx, sections, axis=-1)] == [(2, s) for s in sections]
    assert md.gradcheck(lambda t: F.split(t, sections, axis=-1), tx)


def test_split_unused_pieces_get_zero_gradient(device):
    x = leaf(np.arange(6.0), device)
    a, b, c = md.split(x, 2)
    (b * 3).sum().backward()  # a and c receive no gradient; the engine fills zeros
    close(x.grad, [0, 0, 3, 3, 0, 0])


def test_join_errors(device):
    a, b = leaf(np.ones((2, 3)), device), leaf(np.ones((4, 2)), device)
    with pytest.raises(ValueError, match=r"cat: shapes \[\(2, 3\), \(4, 2\)\]"):
        md.cat([a, b])
    with pytest.raises(ValueError, match=r"stack.*\(2, 3\).*\(4, 2\)"):
        md.stack([a, b])
    with pytest.raises(ValueError, match="cat: expected a non-empty"):
        md.cat([])
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] do not add up to 3"):
        F.split(a, [1, 1], axis=1)
    with pytest.raises(ValueError, match="pad: negative"):
        F.pad(a, (-1, 0))
    with pytest.raises(ValueError, match="pad"):
        F.pad(a, (1, 1, 1, 1, 1, 1))


@pytest.mark.parametrize("widths", [(1, 2), (0, 1, 2, 0), (1, 1, 0, 0, 2, 1), ()])
def test_pad(device, widths):
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    tx = leaf(x, device)
    np_widths = [(0, 0)] * 3
    for i in range(len(widths) // 2):  # torch order: last dim first
        np_widths[2 - i] = (widths[2 * i], widths[2 * i + 1])
    close(F.pad(tx, widths, value=-1.5), np.pad(x, np_widths, constant_values=-1.5))
    assert md.gradcheck(lambda t: F.pad(t, widths, value=-1.5), tx)
    assert md.gradgradcheck(lambda t: F.pad(t * t, widths), tx)


# ---- dtype casts, comparisons and type errors ---------------------------------------------

def test_astype_gradient_returns_to_input_dtype(device):
    x = md.tensor(np.array([1.0, 2.0], np.float32), device=device, requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    close(x.grad, [2.0, 4.0])
    xd = leaf([1.0, 2.0], device)
    assert md.gradcheck(lambda t: t.double() * 3, xd)
    assert xd.long().dtype == np.int64 and not xd.long().requires_grad


def test_comparisons_are_constant_bool_tensors(device):
    x = leaf([1.0, 2.0, 3.0], device)
    mask = x > 1.5
    assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal(mask.numpy(), [False, True, True])
    np.testing.assert_array_equal((x <= md.tensor([1.0, 1.0, 5.0], device=device)).numpy(),
                                  [True, False, True])


def test_mixing_float_and_int_names_both(device):
    f = md.tensor(np.ones((2, 3), np.float32), device=device)
    i = md.tensor(np.ones((2, 3), np.int64), device=device)
    for op in (lambda: f + i, lambda: i * f, lambda: f - i, lambda: f / i, lambda: f @ i.T,
               lambda: F.maximum(f, i), lambda: F.where(f.data > 0, f, i)):
        with pytest.raises(TypeError, match=r"float32 \(shape \(2, 3\)\).*int64|int64.*float32"):
            op()
    assert (i + i).dtype == np.int64  # integer arithmetic is fine, it just has no gradient


def test_where_broadcast_error_names_shapes(device, xp):
    with pytest.raises(ValueError, match=r"where.*\(2,\).*\(3,\).*\(2,\)"):
        F.where(xp.asarray([True, False]), leaf(np.ones(3), device), leaf(np.ones(2), device))


# ---- second derivatives of the elementwise ops --------------------------------------------

@pytest.mark.parametrize("name", ["mul", "div", "pow", "exp", "log", "sqrt", "var", "getitem"])
def test_gradgradcheck_math(device, name):
    rng = np.random.default_rng(0)
    a, b = leaf(rng.uniform(0.5, 2, (2, 3)), device), leaf(rng.uniform(0.5, 2, (3,)), device)
    fn, ins = {
        "mul": (lambda u, v: u * v, (a, b)),
        "div": (lambda u, v: u / v, (a, b)),
        "pow": (lambda u, v: u ** v, (a, b)),
        "exp": (F.exp, (a,)),
        "log": (F.log, (a,)),
        "sqrt": (F.sqrt, (a,)),
        "var": (lambda u: F.var(u, axis=0), (a,)),
        "getitem": (lambda u: u[[0, 0, 1], 1:] ** 2, (a,)),
    }[name]
    assert md.gradgradcheck(fn, *ins)
