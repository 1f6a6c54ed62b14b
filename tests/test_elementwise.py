"""Elementwise ops (minidl/functional/elementwise.py): binary ops with broadcasting and Python
scalars, unary ops, clip, where, casts, comparisons, dtype errors, second derivatives.

Forward against NumPy, float64 gradcheck over all of an op's inputs on hypothesis-generated
shapes (tests/op_checks.py has the shared helpers).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra import numpy as hnp
from op_checks import close, fixture_ok, leaf, seeds

import minidl as md
import minidl.functional as F


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


# ---- ties: maximum/minimum split the gradient evenly -------------------------------------

def test_maximum_minimum_split_ties_evenly(device):
    a, b = leaf([1.0, 2.0, 3.0], device), leaf([1.0, 5.0, 0.0], device)
    F.maximum(a, b).sum().backward()
    close(a.grad, [0.5, 0, 1])
    close(b.grad, [0.5, 1, 0])
    a.grad = b.grad = None
    F.minimum(a, b).sum().backward()
    close(a.grad, [0.5, 1, 0])
    close(b.grad, [0.5, 0, 1])


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


def test_mixing_float_and_int_promotes_as_torch(device):
    # torch: a float operand's dtype beats an int or bool one; matmul still needs one dtype
    f = md.tensor(np.full((2, 3), 1.5, np.float32), device=device)
    i = md.tensor(np.full((2, 3), 2, np.int64), device=device)
    for op, ref in ((lambda: f + i, 3.5), (lambda: i * f, 3.0), (lambda: f - i, -0.5),
                    (lambda: f / i, 0.75), (lambda: i ** f, 2 ** 1.5),
                    (lambda: F.maximum(f, i), 2.0), (lambda: F.where(f.data > 0, i, f), 2.0)):
        out = op()
        assert out.dtype == np.float32, out.dtype
        np.testing.assert_allclose(out.numpy(), np.full((2, 3), ref), rtol=1e-6)
    with pytest.raises(TypeError, match=r"float32 \(shape \(2, 3\)\).*int64|int64.*float32"):
        f @ i.T
    assert (i + i).dtype == np.int64  # integer arithmetic stays integer, it just has no gradient
    assert (i * 0.5).dtype == np.float32  # int tensor * Python float: the default float dtype
    assert (i * 2).dtype == np.int64
    assert (f * 2.5).dtype == np.float32  # a Python float keeps a float32 tensor float32
    d = md.tensor(np.ones((2, 3)), device=device)
    assert (f + d).dtype == np.float64  # float32 + float64 tensors: float64, as torch
    assert (f * d.sum()).dtype == np.float32  # a 0-d float64 does not widen float32 (torch)
    b = md.tensor(np.ones((2, 3), bool), device=device)
    assert (f * b).dtype == np.float32


def test_promotion_keeps_gradients_of_the_float_input(device):
    x = leaf([1.0, -2.0], device)
    (x * md.tensor([3, 4], device=device)).sum().backward()
    close(x.grad, [3.0, 4.0])
    assert x.grad.dtype == np.float64


def test_where_broadcast_error_names_shapes(device, xp):
    with pytest.raises(ValueError, match=r"where.*\(2,\).*\(3,\).*\(2,\)"):
        F.where(xp.asarray([True, False]), leaf(np.ones(3), device), leaf(np.ones(2), device))


# ---- second derivatives of the elementwise ops --------------------------------------------

@pytest.mark.parametrize("name", ["mul", "div", "pow", "exp", "log", "sqrt"])
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
    }[name]
    assert md.gradgradcheck(fn, *ins)
