"""Activations (minidl/functional/activation.py): forward against NumPy, gradcheck,
gradgradcheck, second derivatives against closed forms, and numerical stability; the
activation layers (minidl/nn/activation.py) and get_activation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from layer_checks import randn

import minidl as md
import minidl.functional as F
import minidl.nn as nn

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**16)


def leaf(a, device, requires_grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=requires_grad)


def away_from_zero(shape, rng):
    """|x| in [0.1, 2.5]: relu, leaky_relu and elu have a kink at 0 we keep clear of."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.5, shape)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


ACTIVATIONS = {
    # name: (minidl op, NumPy reference)
    "relu": (F.relu, lambda x: np.maximum(x, 0)),
    "leaky_relu": (F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x)),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, negative_slope=0.2),
                       lambda x: np.where(x > 0, x, 0.2 * x)),
    "elu": (F.elu, lambda x: np.where(x > 0, x, np.expm1(x))),
    "elu_alpha": (lambda x: F.elu(x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (F.tanh, np.tanh),
    "softmax": (F.softmax, lambda x: np_softmax(x, -1)),
    "softmax_axis0": (lambda x: F.softmax(x, axis=0), lambda x: np_softmax(x, 0)),
    "log_softmax": (F.log_softmax, lambda x: np_log_softmax(x, -1)),
    "log_softmax_axis0": (lambda x: F.log_softmax(x, axis=0), lambda x: np_log_softmax(x, 0)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@fixture_ok
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4), seed=seeds)
def test_forward_and_gradcheck(device, name, shape, seed):
    op, ref = ACTIVATIONS[name]
    if "softmax" in name and 0 in (shape[0], shape[-1]):
        shape = (1,) + shape[1:-1] + (1,)  # softmax needs a non-empty axis; others may be empty
    x = away_from_zero(shape, np.random.default_rng(seed))
    tx = leaf(x, device)
    np.testing.assert_allclose(op(tx).numpy(), ref(x), rtol=1e-10, atol=1e-12)
    assert md.gradcheck(op, tx)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_float32_forward(device, name):
    op, ref = ACTIVATIONS[name]
    x = away_from_zero((3, 5), np.random.default_rng(0))
    y = op(md.tensor(x.astype(np.float32), device=device))
    assert y.dtype == np.float32  # activations keep the input dtype
    np.testing.assert_allclose(y.numpy(), ref(x), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softmax", "softmax_axis0", "log_softmax",
                                  "log_softmax_axis0", "elu", "elu_alpha", "relu",
                                  "leaky_relu", "leaky_relu_0.2"])
def test_gradgradcheck(device, name):
    op, _ = ACTIVATIONS[name]
    x = leaf(away_from_zero((3, 4), np.random.default_rng(1)), device)
    assert md.gradgradcheck(op, x)
    # through a composition too, so the backward graph of one feeds the next
    assert md.gradgradcheck(lambda t: op(t) * op(t), x)


def second_derivative(op, x):
    """d2/dx2 of op, elementwise, by differentiating the first derivative (create_graph)."""
    (g,) = md.grad(op(x).sum(), x, create_graph=True)
    (h,) = md.grad(g.sum(), x)
    return g.numpy(), h.numpy()


def test_tanh_second_derivative_closed_form(device):
    x = np.linspace(-3, 3, 13)
    g, h = second_derivative(F.tanh, leaf(x, device))
    t = np.tanh(x)
    np.testing.assert_allclose(g, 1 - t ** 2, rtol=1e-12)
    np.testing.assert_allclose(h, -2 * t * (1 - t ** 2), rtol=1e-10, atol=1e-14)


def test_sigmoid_second_derivative_closed_form(device):
    x = np.linspace(-6, 6, 13)
    g, h = second_derivative(F.sigmoid, leaf(x, device))
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(g, s * (1 - s), rtol=1e-12)
    np.testing.assert_allclose(h, s * (1 - s) * (1 - 2 * s), rtol=1e-10, atol=1e-14)


def hessian(f, x):
    """Full Hessian of the scalar f at the 1-D tensor x, one create_graph row at a time."""
    (g,) = md.grad(f(x), x, create_graph=True)
    rows = [md.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(x.shape[0])]
    return g.numpy(), np.stack(rows)


def test_softmax_hessian_closed_form(device):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(5), rng.standard_normal(5)
    tw = md.tensor(w, device=device)
    g, H = hessian(lambda t: (F.softmax(t) * tw).sum(), leaf(x, device))
    s = np_softmax(x, -1)
    a = w - s @ w                                    # f = <w, s>; grad = s * (w - <s, w>)
    np.testing.assert_allclose(g, s * a, rtol=1e-12, atol=1e-15)
    expected = np.diag(s * a) - np.outer(s * a, s) - np.outer(s, s * a)
    np.testing.assert_allclose(H, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(H, H.T, atol=1e-14)  # a Hessian is symmetric


def test_log_softmax_hessian_closed_form(device):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(4), rng.standard_normal(4)
    tw = md.tensor(w, device=device)
    g, H = hessian(lambda t: (F.log_softmax(t) * tw).sum(), leaf(x, device))
    s = np_softmax(x, -1)
    np.testing.assert_allclose(g, w - s * w.sum(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(H, -w.sum() * (np.diag(s) - np.outer(s, s)),
                               rtol=1e-10, atol=1e-14)


def test_relu_family_gradients_at_and_around_zero(device):
    x = leaf([-2.0, 0.0, 3.0], device)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 1])  # gradient 0 at the kink
    x.grad = None
    F.leaky_relu(x, 0.1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.1, 0.1, 1])
    x.grad = None
    F.elu(x, alpha=2.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * np.exp(-2), 2.0, 1])


def test_stability_at_extremes(device):
    x = md.tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], np.float32), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        s = F.sigmoid(x).numpy()
        sm = F.softmax(x).numpy()
        lsm = F.log_softmax(x).numpy()
        e = F.elu(x).numpy()
    np.testing.assert_allclose(s, [0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1],
                               rtol=1e-6, atol=0)
    np.testing.assert_allclose(sm, [0, 0, 0, 0, 1], atol=1e-30)
    assert np.isfinite(lsm).all() and lsm[-1] == 0 and lsm[0] == -2000
    np.testing.assert_allclose(e, [-1, -1, 0, 50, 1000])


@fixture_ok
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seed=seeds,
       data=st.data())
def test_softmax_rows_are_distributions(device, shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * 10
    p = F.softmax(leaf(x, device), axis=axis).numpy()
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(F.log_softmax(leaf(x, device), axis=axis).numpy()), p,
                               rtol=1e-12)
    # softmax is shift invariant
    np.testing.assert_allclose(F.softmax(leaf(x + 100, device), axis=axis).numpy(), p,
                               rtol=1e-10, atol=1e-300)


# ---- the layers: nn.ReLU, ..., and get_activation --------------------------------------

@pytest.mark.parametrize("name", ["relu", "leaky", "elu", "sigmoid", "tanh", "softmax",
                                  "logsoftmax", "identity"])
def test_activation_modules(name):
    x = randn(3, 4, requires_grad=True)
    m, f = {
        "relu": (nn.ReLU(), F.relu), "leaky": (nn.LeakyReLU(0.2), lambda t: F.leaky_relu(t, 0.2)),
        "elu": (nn.ELU(0.5), lambda t: F.elu(t, 0.5)), "sigmoid": (nn.Sigmoid(), F.sigmoid),
        "tanh": (nn.Tanh(), F.tanh), "softmax": (nn.Softmax(axis=0), lambda t: F.softmax(t, 0)),
        "logsoftmax": (nn.LogSoftmax(), F.log_softmax), "identity": (nn.Identity(), lambda t: t),
    }[name]
    np.testing.assert_allclose(m(x).numpy(), f(x).numpy())
    assert md.gradcheck(m, x)


def test_get_activation():
    assert isinstance(nn.get_activation("relu"), nn.ReLU)
    assert isinstance(nn.get_activation("linear"), nn.Identity)
    assert nn.get_activation(None) is None
    r = nn.ReLU()
    assert nn.get_activation(r) is r
    assert isinstance(nn.get_activation(F.tanh), nn.Lambda)
    with pytest.raises(TypeError):
        nn.get_activation(3)
