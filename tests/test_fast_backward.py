"""The engine's array fast paths (``Function.fast_backward``, minidl/autograd.py and the ops of
minidl/functional/elementwise.py and activation.py): they give the same gradients, bit for
bit, as the Tensor-op ``backward`` a recorded (``create_graph=True``) backward runs, over
broadcasting, 0-d operands, mixed dtypes and an upstream gradient of another dtype.
"""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl.functional.activation import ReLU, Sigmoid, Tanh
from minidl.functional.elementwise import Add, Div, Exp, Mul, Neg, Sub
from minidl.functional.linalg import MatMul

BINARY = {"add": (Add, lambda a, b: a + b), "sub": (Sub, lambda a, b: a - b),
          "mul": (Mul, lambda a, b: a * b), "div": (Div, lambda a, b: a / b)}
UNARY = {"neg": (Neg, lambda x: -x), "exp": (Exp, F.exp), "tanh": (Tanh, F.tanh),
         "sigmoid": (Sigmoid, F.sigmoid), "relu": (ReLU, F.relu)}
SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((3, 4), ()), ((), ())]
DTYPES = [("float32", "float32"), ("float64", "float64"), ("float32", "float64"),
          ("float64", "float32")]


def _grads(op, arrays, device, root_dtype, create_graph):
    xs = [md.tensor(a, device=device, requires_grad=True) for a in arrays]
    y = op(*xs)
    gen = np.random.default_rng(1)
    g = md.tensor(gen.standard_normal(y.shape).astype(root_dtype), device=device)
    y.backward(g, create_graph=create_graph)
    return [x.grad.numpy() for x in xs]


def _spy(monkeypatch, cls):
    """Count the calls of ``cls.fast_backward`` that did not fall back."""
    calls = []
    original = cls.fast_backward

    def counted(self, *gys):
        out = original(self, *gys)
        calls.append(out is not NotImplemented)
        return out
    monkeypatch.setattr(cls, "fast_backward", counted)
    return calls


def _check_same(fast, slow):
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype
        assert f.shape == s.shape
        np.testing.assert_array_equal(f, s)  # exactly equal, not close


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("dtypes", DTYPES)
def test_binary_fast_backward_is_bit_identical(name, shapes, dtypes, device, monkeypatch):
    cls, op = BINARY[name]
    gen = np.random.default_rng(0)
    arrays = [(gen.uniform(0.5, 2.0, s) * gen.choice([-1, 1], s)).astype(d)
              for s, d in zip(shapes, dtypes)]
    calls = _spy(monkeypatch, cls)
    for root in ("float32", "float64"):
        fast = _grads(op, arrays, device, root, create_graph=False)
        slow = _grads(op, arrays, device, root, create_graph=True)
        _check_same(fast, slow)
    assert calls, "the fast path was never tried"
    # mixed dtypes fall back to backward in Mul and Div; Add and Sub never need to
    if dtypes[0] == dtypes[1] or name in ("add", "sub"):
        assert any(calls)


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(3, 4), (), (2, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_fast_backward_is_bit_identical(name, shape, dtype, device, monkeypatch):
    cls, op = UNARY[name]
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    calls = _spy(monkeypatch, cls)
    for root in ("float32", "float64"):
        fast = _grads(op, [x], device, root, create_graph=False)
        slow = _grads(op, [x], device, root, create_graph=True)
        _check_same(fast, slow)
    assert calls and all(calls)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((1, 4), (4, 1)), ((2, 3, 4), (4, 2)),
                                    ((4,), (4, 3)), ((3, 4), (4,))])
@pytest.mark.parametrize("dtypes", DTYPES)
def test_matmul_fast_backward_is_bit_identical(shapes, dtypes, device, monkeypatch):
    gen = np.random.default_rng(0)
    arrays = [gen.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    calls = _spy(monkeypatch, MatMul)
    for root in ("float32", "float64"):
        fast = _grads(lambda a, b: a @ b, arrays, device, root, create_graph=False)
        slow = _grads(lambda a, b: a @ b, arrays, device, root, create_graph=True)
        _check_same(fast, slow)
    # the 2-D case takes the fast path; batched and 1-D operands fall back to backward
    assert calls and all(calls) == (len(shapes[0]) == len(shapes[1]) == 2)


def test_chain_with_branches_matches_recorded_backward():
    """A graph that branches and joins (heap order) and reuses leaves: the array engine and the
    recorded one give the same bits, and the same as before a second backward accumulates."""
    gen = np.random.default_rng(2)
    data = [gen.standard_normal((4, 4)).astype(np.float32) for _ in range(3)]

    def run(create_graph):
        x, w, b = (md.tensor(a, requires_grad=True) for a in data)
        y = x
        for i in range(40):
            z = F.tanh(y * w) + b
            y = z * y if i % 3 == 0 else z - y / (1 + F.exp(-z * z))
        y.sum().backward(create_graph=create_graph)
        return [t.grad.numpy() for t in (x, w, b)]
    _check_same(run(False), run(True))


def test_unused_output_gets_zeros_and_hooks_see_tensors():
    """The engine's array mode still hands hooks Tensors and fills an unused output with
    zeros (split's second half here)."""
    x = md.tensor(np.arange(6.0, dtype=np.float32), requires_grad=True)
    first, _second = F.split(x, 3)
    seen = []
    first.register_hook(lambda g: seen.append(type(g)) or g * 2)
    (first * first).sum().backward()
    assert seen == [md.Tensor]
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 4.0, 8.0, 0.0, 0.0, 0.0])
