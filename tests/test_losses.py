"""Losses (minidl/functional/loss.py) against NumPy references, with gradchecks; inverted
dropout (minidl/functional/dropout.py): scaling, statistics, eval identity, gradient; and the
table of loss names (minidl/train/losses.py): one meaning per name, through every entry point
(get_loss, the Trainer, keras compile/evaluate)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minidl as md
import minidl.functional as F

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**16)
REDUCTIONS = ["mean", "sum", "none"]


def leaf(a, device, requires_grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=requires_grad)


def reduce(losses, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](losses)


def np_log_softmax(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Independent reference: explicit loops over samples and positions."""
    logits = np.moveaxis(logits, 1, -1)               # (N, d..., C)
    c = logits.shape[-1]
    flat = logits.reshape(-1, c)
    if np.issubdtype(target.dtype, np.integer):
        q = np.zeros_like(flat)
        for row, label in enumerate(target.reshape(-1)):
            q[row, label] = 1.0
    else:
        q = np.moveaxis(target, 1, -1).reshape(-1, c)
    q = q * (1 - label_smoothing) + label_smoothing / c
    losses = np.empty(flat.shape[0])
    for row, z in enumerate(flat):
        logz = np.log(np.sum(np.exp(z - z.max()))) + z.max()
        losses[row] = -np.sum(q[row] * (z - logz))
    return reduce(losses.reshape(logits.shape[:-1]), reduction)


@st.composite
def ce_case(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    return (n, c) + spatial, draw(st.sampled_from(REDUCTIONS)), \
        draw(st.sampled_from([0.0, 0.1, 1.0])), draw(st.booleans())


@fixture_ok
@given(case=ce_case(), seed=seeds)
def test_cross_entropy(device, case, seed):
    shape, reduction, smoothing, soft = case
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape) * 3
    if soft:  # class probabilities with the logits' shape
        target = np.moveaxis(rng.dirichlet(np.ones(shape[1]), (shape[0],) + shape[2:]), -1, 1)
        t = leaf(target, device)
    else:
        target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
        t = md.tensor(target, device=device)
    x = leaf(logits, device)
    out = F.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing)
    expected = np_cross_entropy(logits, target, reduction, smoothing)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    fn = lambda a, b: F.cross_entropy(a, b, reduction=reduction, label_smoothing=smoothing)  # noqa: E731
    assert md.gradcheck(fn, x, t)  # float targets are checked too (they require grad)


def test_cross_entropy_gradient_closed_form(device):
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    x = leaf(logits, device)
    F.cross_entropy(x, md.tensor(labels, device=device)).backward()
    p = np.exp(np_log_softmax(logits))
    np.testing.assert_allclose(x.grad.numpy(), (p - np.eye(3)[labels]) / 4, rtol=1e-12)


def test_cross_entropy_unnormalised_float_targets(device):
    # torch accepts any float weights as targets; the gradient is softmax*sum(q) - q then
    rng = np.random.default_rng(1)
    x, t = leaf(rng.standard_normal((3, 4)), device), leaf(rng.uniform(0, 2, (3, 4)), device)
    np.testing.assert_allclose(F.cross_entropy(x, t, reduction="sum").item(),
                               np_cross_entropy(x.numpy(), t.numpy(), "sum"), rtol=1e-12)
    assert md.gradcheck(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.2), x, t)


@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_gradgradcheck(device, soft):
    rng = np.random.default_rng(2)
    x = leaf(rng.standard_normal((3, 4, 2)), device)
    if soft:
        t = leaf(rng.uniform(0, 1, (3, 4, 2)), device)
    else:
        t = md.tensor(rng.integers(0, 4, (3, 2)), device=device)
    for reduction in REDUCTIONS:
        assert md.gradgradcheck(
            lambda a, b: F.cross_entropy(a, b, reduction=reduction, label_smoothing=0.1), x, t)


def test_cross_entropy_float32_and_extreme_logits(device):
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], np.float32)
    x = md.tensor(logits, device=device, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(x, md.tensor([2, 1], device=device), reduction="none")
        loss.sum().backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_allclose(loss.numpy(), [2000.0, np.log(3)], rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [[1, 0, -1], [1 / 3, -2 / 3, 1 / 3]], atol=1e-6)


def test_cross_entropy_errors(device):
    x = leaf(np.zeros((2, 3)), device)
    with pytest.raises(ValueError, match=r"cross_entropy.*\(2, 3\).*\(2,\).*\(3,\)"):
        F.cross_entropy(x, md.tensor([0, 1, 2], device=device))
    with pytest.raises(ValueError, match=r"cross_entropy: target labels must lie in \[0, 3\)"):
        F.cross_entropy(x, md.tensor([0, 3], device=device))
    with pytest.raises(ValueError, match=r"cross_entropy.*\(2, 3\).*\(2, 2\)"):
        F.cross_entropy(x, leaf(np.zeros((2, 2)), device))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, md.tensor([0, 1], device=device), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, md.tensor([0, 1], device=device), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy: input must be \(C,\), \(N, C\)"):
        F.cross_entropy(leaf(np.zeros(()), device), md.tensor(1, device=device))
    with pytest.raises(ValueError, match=r"cross_entropy: unbatched input of shape \(3,\)"):
        F.cross_entropy(leaf(np.zeros(3), device), md.tensor([1], device=device))


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits, labels = rng.standard_normal((4, 5, 3)), rng.integers(0, 5, (4, 3))
    x = leaf(logits, "cpu")
    loss = F.cross_entropy(x, md.tensor(labels), reduction=reduction, label_smoothing=0.2)
    tx = torch.tensor(logits, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(labels), reduction=reduction,
                                              label_smoothing=0.2)
    np.testing.assert_allclose(loss.numpy(), tloss.detach().numpy(), rtol=1e-10)
    loss.backward(md.tensor(np.ones(loss.shape)))
    tloss.backward(torch.ones_like(tloss))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-14)


@fixture_ok
@given(n=st.integers(1, 3), c=st.integers(1, 4), d=st.integers(0, 2), seed=seeds,
       reduction=st.sampled_from(REDUCTIONS))
def test_nll_loss(device, n, c, d, seed, reduction):
    rng = np.random.default_rng(seed)
    shape = (n, c) + (2,) * d
    logp = np_log_softmax(rng.standard_normal(shape))
    labels = rng.integers(0, c, (n,) + (2,) * d)
    x = leaf(logp, device)
    picked = np.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
    out = F.nll_loss(x, md.tensor(labels, device=device), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), reduce(-picked, reduction), rtol=1e-12)
    assert md.gradcheck(lambda a: F.nll_loss(a, md.tensor(labels, device=device),
                                             reduction=reduction), x)
    # log_softmax + nll_loss is cross_entropy
    z = leaf(rng.standard_normal(shape), device)
    t = md.tensor(labels, device=device)
    np.testing.assert_allclose(F.nll_loss(F.log_softmax(z, axis=1), t, reduction=reduction).numpy(),
                               F.cross_entropy(z, t, reduction=reduction).numpy(), rtol=1e-12)


def test_nll_loss_errors(device):
    x = leaf(np.zeros((2, 3)), device)
    with pytest.raises(ValueError, match=r"nll_loss.*\(2, 3\).*\(3,\)"):
        F.nll_loss(x, md.tensor([0, 1, 1], device=device))
    with pytest.raises(ValueError, match=r"nll_loss: target labels"):
        F.nll_loss(x, md.tensor([-1, 1], device=device))
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(x, md.tensor([0, 1], device=device), reduction="max")


@fixture_ok
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=seeds,
       reduction=st.sampled_from(REDUCTIONS))
def test_mse_loss(device, shape, seed, reduction):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    x, t = leaf(a, device), leaf(b, device)
    np.testing.assert_allclose(F.mse_loss(x, t, reduction=reduction).numpy(), reduce((a - b) ** 2, reduction),
                               rtol=1e-12)
    assert md.gradcheck(lambda u, v: F.mse_loss(u, v, reduction=reduction), x, t)


def np_bce(p, t, w=1.0):
    return -w * (t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))


@fixture_ok
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=seeds,
       reduction=st.sampled_from(REDUCTIONS), weighted=st.booleans())
def test_binary_cross_entropy(device, shape, seed, reduction, weighted):
    rng = np.random.default_rng(seed)
    p, t = rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
    w = rng.uniform(0.5, 2, shape[-1:]) if weighted else None
    tw = None if w is None else md.tensor(w, device=device)
    x, tt = leaf(p, device), leaf(t, device)
    out = F.binary_cross_entropy(x, tt, weight=tw, reduction=reduction)
    np.testing.assert_allclose(out.numpy(), reduce(np_bce(p, t, 1.0 if w is None else w),
                                                   reduction), rtol=1e-12)
    assert md.gradcheck(lambda a, b: F.binary_cross_entropy(a, b, tw, reduction=reduction),
                        x, tt)


@fixture_ok
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=seeds,
       reduction=st.sampled_from(REDUCTIONS), weighted=st.booleans())
def test_binary_cross_entropy_with_logits(device, shape, seed, reduction, weighted):
    rng = np.random.default_rng(seed)
    z, t = rng.standard_normal(shape) * 3, rng.uniform(0, 1, shape)
    w = rng.uniform(0.5, 2, shape[-1:]) if weighted else None
    tw = None if w is None else md.tensor(w, device=device)
    x, tt = leaf(z, device), leaf(t, device)
    out = F.binary_cross_entropy_with_logits(x, tt, weight=tw, reduction=reduction)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(out.numpy(), reduce(np_bce(p, t, 1.0 if w is None else w),
                                                   reduction), rtol=1e-10)
    fn = lambda a, b: F.binary_cross_entropy_with_logits(a, b, tw, reduction=reduction)  # noqa: E731
    assert md.gradcheck(fn, x, tt)
    assert md.gradgradcheck(fn, x, tt)


def test_bce_extremes_stay_finite(device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # log(0) inside the clamped BCE is expected
        p = md.tensor(np.array([0.0, 1.0, 0.0, 1.0], np.float32), device=device)
        t = md.tensor(np.array([1.0, 0.0, 0.0, 1.0], np.float32), device=device)
        np.testing.assert_allclose(F.binary_cross_entropy(p, t, reduction="none").numpy(),
                                   [100, 100, 0, 0])  # logs are clamped at -100, as in torch
    z = md.tensor(np.array([1000.0, -1000.0, 1000.0], np.float32), device=device,
                  requires_grad=True)
    t = md.tensor(np.array([0.0, 1.0, 1.0], np.float32), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        loss.sum().backward()
    np.testing.assert_allclose(loss.numpy(), [1000, 1000, 0])
    np.testing.assert_allclose(z.grad.numpy(), [1, -1, 0])


def test_loss_shape_errors(device):
    x, t = leaf(np.zeros((2, 3)), device), leaf(np.zeros((3, 2)), device)
    for fn in (F.mse_loss, F.binary_cross_entropy, F.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match=r"input has shape \(2, 3\) but target has shape \(3, 2\)"):
            fn(x, t)
    with pytest.raises(ValueError, match="mse_loss: reduction"):
        F.mse_loss(x, x, reduction="avg")


# ---- dropout ------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_inverted_scaling_statistics(device, p):
    n = 200_000
    x = md.ones(n, device=device, dtype="float64")
    y = F.dropout(x, p=p).numpy()
    kept = y != 0
    # survivors are scaled by exactly 1/(1-p); everything else is zero
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-12)
    # the fraction of zeros is Binomial(n, p)/n: within 5 standard deviations of p
    sd = np.sqrt(p * (1 - p) / n)
    assert abs((~kept).mean() - p) < 5 * sd
    # so the mean activation is preserved (that is the point of the inverted scaling)
    assert abs(y.mean() - 1.0) < 5 * sd / (1 - p)


def test_dropout_eval_and_edge_probabilities(device):
    x = md.randn(4, 5, device=device, requires_grad=True)
    assert F.dropout(x, p=0.5, training=False) is x
    assert F.dropout(x, p=0.0) is x
    z = F.dropout(x, p=1.0)
    assert (z.numpy() == 0).all() and z.requires_grad
    z.sum().backward()
    assert (x.grad.numpy() == 0).all()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout: p must be in"):
            F.dropout(x, p=bad)


def test_dropout_gradient_is_mask_times_scale(device):
    x = md.tensor(np.random.default_rng(0).uniform(1, 2, (50, 40)), device=device,
                  requires_grad=True)
    y = F.dropout(x, p=0.3)
    g = np.random.default_rng(1).standard_normal((50, 40))
    y.backward(md.tensor(g, device=device))
    mask_scale = y.numpy() / x.numpy()          # 0 or 1/(1-p) per element
    assert set(np.unique(np.round(mask_scale, 12))) == {0.0, round(1 / 0.7, 12)}
    np.testing.assert_allclose(x.grad.numpy(), g * mask_scale, rtol=1e-12)
    assert y.dtype == x.grad.dtype == np.float64


def test_dropout_keeps_dtype_and_is_reproducible(device):
    x = md.ones(1000, device=device)
    md.manual_seed(7)
    a = F.dropout(x, 0.5)
    md.manual_seed(7)
    b = F.dropout(x, 0.5)
    c = F.dropout(x, 0.5)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert (a.numpy() != c.numpy()).any()  # a fresh mask each call


# ---- loss names (minidl/train/losses.py) -----------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _loss_case(name, seed=0):
    """(output, target, expected value) for the loss ``name``, computed in NumPy: 6 samples,
    3 classes. Every name of the table needs a case here (a KeyError otherwise)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((6, 3))
    labels = rng.integers(0, 3, 6)
    p, hot = _softmax(z), np.eye(3)[labels]
    b = (labels % 2).astype(np.float64)[:, None]
    q = 1 / (1 + np.exp(-z[:, :1]))                       # (6, 1) probabilities
    r, t = z[:, :1], rng.standard_normal((6, 1))          # a regression output and target
    ce = -np.mean(np.log(p[np.arange(6), labels]))
    bce = -np.mean(b * np.log(q) + (1 - b) * np.log(1 - q))
    cases = {
        "cross_entropy": (z, labels, ce), "ce": (z, labels, ce),
        "nll": (np.log(p), labels, ce), "nll_loss": (np.log(p), labels, ce),
        "sparse_categorical_crossentropy": (p, labels, ce),
        "categorical_crossentropy": (p, hot, ce),
        "bce": (q, b, bce), "binary_crossentropy": (q, b, bce),
        "bce_with_logits": (z[:, :1], b, bce),
        "mse": (r, t, np.mean((r - t) ** 2)), "mean_squared_error": (r, t, np.mean((r - t) ** 2)),
        "mse_loss": (r, t, np.mean((r - t) ** 2)),
        "mae": (r, t, np.mean(np.abs(r - t))), "mean_absolute_error": (r, t, np.mean(np.abs(r - t))),
    }
    # Keras's huber (delta 1) and KL divergence of the target distribution
    d = np.abs(r - t)
    cases["huber"] = (r, t, np.mean(np.where(d <= 1.0, 0.5 * d ** 2, d - 0.5)))
    soft = _softmax(rng.standard_normal((6, 3)))
    cases["kl_divergence"] = cases["kld"] = (p, soft, np.mean(np.sum(soft * np.log(soft / p),
                                                                      axis=1)))
    return cases[name]


def _passthrough(width, name=None):
    """A float64 Linear layer that returns its input exactly (identity weight, zero bias)."""
    from minidl import nn
    layer = nn.Linear(width, width, name=name).double()
    with md.no_grad():
        layer.weight.data[...] = np.eye(width)
        layer.bias.data[...] = 0.0
    return layer


@pytest.mark.parametrize("name", __import__("minidl.train.losses", fromlist=["x"]).loss_names())
def test_every_loss_name_gives_the_same_value_through_every_entry_point(name):
    from minidl import keras, optim
    from minidl.data import DataLoader
    from minidl.train import Trainer, get_loss

    out, target, expected = _loss_case(name)
    direct = get_loss(name)(md.tensor(out), md.tensor(target)).item()
    model = _passthrough(out.shape[1])
    # batches of 4: 4 + 2 samples, so the sample-weighted epoch mean is checked too
    trainer = Trainer(model, None, loss=name, metrics=[], verbose=0)
    through_trainer = trainer.evaluate(DataLoader((out, target), batch_size=4))["loss"]
    # one training step with lr=0 records the loss of the unchanged model
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.0), loss=name, metrics=[],
                      verbose=0)
    trainer_fit = trainer.fit(DataLoader((out, target), batch_size=6), epochs=1)["loss"]
    k = keras.Sequential(model)
    k.compile(loss=name, optimizer=optim.SGD(k.parameters(), lr=0.0))
    through_keras = k.evaluate(out, target, batch_size=4)
    keras_fit = k.fit(out, target, batch_size=6, verbose=0).history["loss"]
    assert direct == pytest.approx(expected, rel=1e-7)
    assert through_trainer == pytest.approx(expected, rel=1e-7)
    assert trainer_fit == pytest.approx([expected], rel=1e-7)
    assert through_keras == pytest.approx(expected, rel=1e-7)
    assert keras_fit == pytest.approx([expected], rel=1e-7)


@pytest.mark.parametrize("name", __import__("minidl.train.losses", fromlist=["x"]).loss_names())
def test_every_loss_name_gives_the_same_per_output_loss_in_a_two_output_keras_model(name):
    from minidl import keras, optim

    (out_a, target_a, expected_a), (out_b, target_b, expected_b) = (
        _loss_case(name, seed) for seed in (0, 1))
    width = out_a.shape[1]
    # float64 inputs for the float64 layers (a float32 input to them raises, as in torch)
    in_a, in_b = keras.Input((width,), dtype=np.float64), keras.Input((width,), dtype=np.float64)
    model = keras.Model([in_a, in_b], [_passthrough(width, "a")(in_a),
                                       _passthrough(width, "b")(in_b)])
    model.compile(loss=[name, name], loss_weights=[0.5, 2.0],
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    expected = {"loss": 0.5 * expected_a + 2.0 * expected_b, "a_loss": expected_a,
                "b_loss": expected_b}
    logs = model.evaluate([out_a, out_b], [target_a, target_b], batch_size=4,
                          return_dict=True)
    assert logs == pytest.approx(expected, rel=1e-7)
    hist = model.fit([out_a, out_b], [target_a, target_b], batch_size=6, verbose=0)
    assert {k: v for k, (v,) in hist.history.items()} == pytest.approx(expected, rel=1e-7)


def test_keras_names_take_probabilities_and_torch_names_take_logits():
    # The clash this table ended: the same name gave 0.7679 through the Trainer (logits)
    # and 0.3567 through keras compile (probabilities).
    from minidl import keras, optim
    from minidl.train import get_loss

    p, y = np.array([[0.7, 0.2, 0.1]]), np.array([0])
    keras_ce = get_loss("sparse_categorical_crossentropy")(md.tensor(p), md.tensor(y)).item()
    torch_ce = get_loss("cross_entropy")(md.tensor(p), md.tensor(y)).item()
    assert keras_ce == pytest.approx(-np.log(0.7))                          # 0.3567
    assert torch_ce == pytest.approx(np.log(np.exp(p).sum()) - 0.7)        # 0.7679
    model = keras.Sequential(_passthrough(3))
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    assert model.evaluate(p, y) == pytest.approx(keras_ce)


def test_keras_losses_take_keras_target_shapes_and_clip_probabilities():
    from minidl.train import get_loss

    out = md.tensor(np.array([[0.5], [2.0]]))
    flat = md.tensor(np.array([1.0, 0.0]))                  # (N,) targets for (N, 1) outputs
    assert get_loss("mse")(out, flat).item() == pytest.approx((0.25 + 4.0) / 2)
    assert get_loss("mae")(out, flat).item() == pytest.approx((0.5 + 2.0) / 2)
    with pytest.raises(ValueError):                         # torch's name keeps torch's rule
        get_loss("mse_loss")(out, flat)
    probs = md.tensor(np.array([[1.0, 0.0], [0.0, 1.0]]))
    column = md.tensor(np.array([[0], [0]]))                # (N, 1) class indices
    # p = 0 for the true class of row 2: clipped to 1e-7, as Keras does, so the loss is finite
    assert get_loss("sparse_categorical_crossentropy")(probs, column).item() == \
        pytest.approx(-np.log(1e-7) / 2, rel=1e-6)
    assert get_loss("binary_crossentropy")(md.tensor([[0.0]]), md.tensor([1.0])).item() == \
        pytest.approx(-np.log(1e-7), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")
