"""minidl.gradcheck: it passes correct backwards, and it catches wrong ones (in any input, in
second derivatives), with a message naming the input, the element and both values."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl.autograd import Function, Tensor
from minidl.gradcheck import GradcheckError


def leaf(a, device, requires_grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=requires_grad)


class MulWrongInSecond(Function):
    """a * b whose gradient for b is off by 10% (the first input's is right)."""

    keep_inputs = (0, 1)

    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return gy * b, gy * a * 1.1


class SquareDetached(Function):
    """x**2 with a correct first derivative that does not differentiate again: backward uses
    a constant copy of x, so gradgradcheck must fail while gradcheck passes."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * Tensor(2 * self.x)


def test_passes_correct_gradients(device):
    rng = np.random.default_rng(0)
    a, b = leaf(rng.standard_normal((3, 4)), device), leaf(rng.standard_normal((4, 2)), device)
    assert md.gradcheck(lambda u, v: F.tanh(u @ v), a, b) is True
    assert md.gradgradcheck(lambda u, v: F.tanh(u @ v), a, b) is True


def test_catches_a_wrong_gradient_in_any_input_and_names_it(device):
    a, b = leaf([[1.0, 2.0], [3.0, 4.0]], device), leaf([[0.5, -1.0], [2.0, 1.5]], device)
    with pytest.raises(GradcheckError) as info:
        md.gradcheck(lambda u, v: MulWrongInSecond()(u, v), a, b)
    msg = str(info.value)
    assert "input 1" in msg and "shape (2, 2)" in msg
    # the worst element, with both values: analytic is 1.1x numeric there
    worst = tuple(int(i) for i in msg.split("index (")[1].split(")")[0].split(","))
    analytic = float(msg.split("analytic ")[1].split(",")[0])
    numeric = float(msg.split("numeric ")[1].split(" ")[0])
    np.testing.assert_allclose(analytic, 1.1 * numeric, rtol=1e-6)
    assert len(worst) == 2 and all(0 <= i < 2 for i in worst)
    # only the first input requiring grad: that one is right, so the check passes
    assert md.gradcheck(lambda u, v: MulWrongInSecond()(u, v), a, b.detach())
    assert md.gradcheck(lambda u, v: MulWrongInSecond()(u, v), a, b, raise_exception=False) \
        is False


def test_gradgradcheck_catches_a_backward_that_is_not_differentiable(device):
    x = leaf([0.5, -1.0, 2.0], device)
    assert md.gradcheck(lambda t: SquareDetached()(t), x)
    with pytest.raises(GradcheckError, match="input 0"):
        md.gradgradcheck(lambda t: SquareDetached()(t), x)
    assert md.gradgradcheck(lambda t: t * t, x)


def test_works_in_float64_on_float32_inputs(device):
    # float32 finite differences with eps=1e-6 would be noise; the check copies to float64
    x = md.tensor(np.array([0.3, -1.2, 2.0], np.float32), device=device, requires_grad=True)
    seen = []
    assert md.gradcheck(lambda t: (seen.append(t.dtype), F.sigmoid(t) * F.exp(t))[1], x)
    assert set(seen) == {np.dtype(np.float64)}
    assert x.dtype == np.float32 and x.grad is None  # the caller's tensor is untouched


def test_multiple_outputs_non_tensor_arguments_and_constant_inputs(device):
    x, c = leaf(np.arange(1.0, 7.0), device), leaf([2.0], device, requires_grad=False)
    assert md.gradcheck(lambda t, k, n: tuple(p * k for p in md.split(t, n)), x, c, 2)
    # an output that does not depend on an input gives zero gradient on both sides
    y = leaf([1.0, 2.0], device)
    assert md.gradcheck(lambda a, b: a * 2, x, y)


def test_non_contiguous_inputs(device):
    base = np.random.default_rng(1).standard_normal((3, 4))
    x = md.tensor(base.T, device=device, requires_grad=True)  # a transposed view
    assert md.gradcheck(lambda t: (t * t).sum(axis=0), x)
    with pytest.raises(GradcheckError):
        md.gradcheck(lambda t: MulWrongInSecond()(t, t), x)


def test_needs_an_input_that_requires_grad(device):
    with pytest.raises(ValueError, match="no input requires grad"):
        md.gradcheck(lambda t: t * 2, leaf([1.0], device, requires_grad=False))


def test_tolerances_are_honoured(device):
    x = leaf([1.0, 2.0], device)
    # 10% error passes with rtol=0.2 and fails with the default
    assert md.gradcheck(lambda t: MulWrongInSecond()(x.detach(), t), x, rtol=0.2)
    assert not md.gradcheck(lambda t: MulWrongInSecond()(x.detach(), t), x,
                            raise_exception=False)
