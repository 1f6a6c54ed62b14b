"""torch's loss options (minidl/functional/loss.py): class weights, ignore_index, unbatched
inputs, probability targets, pos_weight, the deprecated size_average/reduce; the L1, smooth L1
and Huber losses; and the loss modules (minidl/nn/loss.py). References are torch's documented
formulas, computed in NumPy one position at a time."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_checks import fixture_ok, leaf, seeds

import minidl as md
import minidl.functional as F

REDUCTIONS = ["mean", "sum", "none"]


def reduce(losses, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](losses)


def np_log_softmax(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# ---- torch's options: class weights, ignore_index, unbatched inputs, pos_weight ------------

def np_weighted_cross_entropy(logits, target, weight, ignore_index, reduction, smoothing):
    """torch's documented formula, one position at a time: for labels
    loss = (1 - eps) * w[y] * -logp[y] + eps / C * sum_c w[c] * -logp[c], 0 where y is
    ignored; 'mean' divides by the sum of w[y] over the positions not ignored. For
    probabilities loss = -sum_c w[c] * q[c] * logp[c] and 'mean' divides by the positions."""
    c = logits.shape[1]
    w = np.ones(c) if weight is None else weight
    z = np.moveaxis(logits, 1, -1).reshape(-1, c)
    labels = np.issubdtype(target.dtype, np.integer)
    t = target.reshape(-1) if labels else np.moveaxis(target, 1, -1).reshape(-1, c)
    losses, total = np.zeros(len(z)), 0.0
    for row in range(len(z)):
        logp = z[row] - z[row].max() - np.log(np.sum(np.exp(z[row] - z[row].max())))
        if labels:
            if t[row] == ignore_index:
                continue
            y = t[row]
            losses[row] = (1 - smoothing) * w[y] * -logp[y] + smoothing / c * np.sum(w * -logp)
            total += w[y]
        else:
            q = t[row] * (1 - smoothing) + smoothing / c
            losses[row] = -np.sum(w * q * logp)
            total += 1
    losses = losses.reshape((logits.shape[0],) + logits.shape[2:])
    if reduction == "mean":
        return losses.sum() / total
    return losses.sum() if reduction == "sum" else losses


@st.composite
def weighted_ce_case(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    return ((n, c) + spatial, draw(st.sampled_from(REDUCTIONS)),
            draw(st.sampled_from([0.0, 0.3])), draw(st.booleans()),
            draw(st.sampled_from([-100, 1])))


@fixture_ok
@given(case=weighted_ce_case(), seed=seeds)
def test_cross_entropy_weight_and_ignore_index(device, case, seed):
    shape, reduction, smoothing, weighted, ignore = case
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape) * 2
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    target.reshape(-1)[0] = 0                                  # one position is never ignored
    if target.size > 1:                                        # and one always is
        target.reshape(-1)[-1] = ignore
    weight = rng.uniform(0.5, 2.0, shape[1]) if weighted else None
    tw = None if weight is None else md.tensor(weight, device=device)
    x, t = leaf(logits, device), md.tensor(target, device=device)
    fn = lambda a: F.cross_entropy(a, t, tw, ignore_index=ignore, reduction=reduction,  # noqa: E731
                                   label_smoothing=smoothing)
    expected = np_weighted_cross_entropy(logits, target, weight, ignore, reduction, smoothing)
    np.testing.assert_allclose(fn(x).numpy(), expected, rtol=1e-10, atol=1e-12)
    assert md.gradcheck(fn, x)
    # nll_loss takes the same weight and ignore_index
    if smoothing == 0.0:
        nll = F.nll_loss(F.log_softmax(x, axis=1), t, tw, ignore_index=ignore,
                         reduction=reduction)
        np.testing.assert_allclose(nll.numpy(), expected, rtol=1e-10, atol=1e-12)
        assert md.gradcheck(lambda a: F.nll_loss(a, t, tw, ignore_index=ignore,
                                                 reduction=reduction), x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_weight_with_probability_targets(device, reduction):
    rng = np.random.default_rng(4)
    logits, probs = rng.standard_normal((3, 4, 2)), rng.dirichlet(np.ones(4), (3, 2))
    probs = np.moveaxis(probs, -1, 1)
    weight = rng.uniform(0.5, 2.0, 4)
    x, t = leaf(logits, device), leaf(probs, device)
    tw = md.tensor(weight, device=device)
    fn = lambda a, b: F.cross_entropy(a, b, tw, reduction=reduction, label_smoothing=0.2)  # noqa: E731
    np.testing.assert_allclose(fn(x, t).numpy(), np_weighted_cross_entropy(
        logits, probs, weight, -100, reduction, 0.2), rtol=1e-10)
    assert md.gradcheck(fn, x, t)
    assert md.gradgradcheck(fn, x, t)


def test_cross_entropy_weighted_gradgradcheck(device):
    rng = np.random.default_rng(5)
    x = leaf(rng.standard_normal((4, 3)), device)
    t = md.tensor([0, 2, 1, 2], device=device)
    tw = md.tensor(rng.uniform(0.5, 2, 3), device=device)
    assert md.gradgradcheck(lambda a: F.cross_entropy(a, t, tw, ignore_index=1,
                                                      label_smoothing=0.1), x)


def test_cross_entropy_all_targets_ignored_is_nan_as_in_torch(device):
    x = leaf(np.zeros((2, 3)), device)
    t = md.tensor([-100, -100], device=device)
    assert np.isnan(F.cross_entropy(x, t).item())
    assert np.isnan(F.nll_loss(x, t).item())
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0


def test_unbatched_cross_entropy_and_nll_loss(device):
    rng = np.random.default_rng(6)
    z = rng.standard_normal(5)
    x = leaf(z, device)
    logp = z - np.log(np.exp(z).sum())
    for reduction in REDUCTIONS:
        out = F.cross_entropy(x, md.tensor(3, device=device), reduction=reduction)
        assert out.shape == ()
        np.testing.assert_allclose(out.item(), -logp[3], rtol=1e-12)
        out = F.nll_loss(leaf(logp, device), md.tensor(3, device=device), reduction=reduction)
        assert out.shape == () and out.item() == pytest.approx(-logp[3], rel=1e-12)
    q = rng.dirichlet(np.ones(5))
    np.testing.assert_allclose(F.cross_entropy(x, leaf(q, device)).item(), -(q * logp).sum(),
                               rtol=1e-12)
    assert md.gradcheck(lambda a: F.cross_entropy(a, md.tensor(3, device=device),
                                                  label_smoothing=0.1), x)
    assert md.gradcheck(lambda a, b: F.cross_entropy(a, b), x, leaf(q, device))


def test_torch_loss_argument_errors_and_legacy_reductions(device):
    x, t = leaf(np.zeros((2, 3)), device), md.tensor([0, 1], device=device)
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have one entry per class, "
                                         r"shape \(3,\).*got \(2,\)"):
        F.cross_entropy(x, t, md.tensor([1.0, 2.0], device=device))
    with pytest.raises(TypeError, match=r"cross_entropy: the third argument is weight.*"
                                        r"reduction='sum'"):
        F.cross_entropy(x, t, "sum")
    with pytest.raises(TypeError, match=r"mse_loss: got 'sum' for size_average.*reduction='sum'"):
        F.mse_loss(x, x, "sum")
    with pytest.raises(ValueError, match="cross_entropy: ignore_index=0 needs integer labels"):
        F.cross_entropy(x, leaf(np.ones((2, 3)) / 3, device), ignore_index=0)
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\) \(or equal "
                                         r"ignore_index=-1\)"):
        F.cross_entropy(x, md.tensor([0, -100], device=device), ignore_index=-1)
    with pytest.raises(TypeError, match=r"nll_loss: target must hold integer class indices.*"
                                        r"target.long\(\)"):
        F.nll_loss(x, leaf(np.zeros(2), device))
    # torch's deprecated size_average / reduce still work, as in torch, with its warning
    z = leaf(np.arange(6.0).reshape(2, 3), device)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        summed = F.cross_entropy(z, t, size_average=False)
    assert summed.item() == pytest.approx(F.cross_entropy(z, t, reduction="sum").item())
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert F.mse_loss(z, z * 2, reduce=False).shape == (2, 3)


def np_bce_with_logits(z, t, weight=1.0, pos_weight=1.0):
    """torch's formula: -w * (pw * t * log(sigmoid(z)) + (1 - t) * log(1 - sigmoid(z)))."""
    p = 1 / (1 + np.exp(-z))
    return -weight * (pos_weight * t * np.log(p) + (1 - t) * np.log(1 - p))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_pos_weight(device, reduction):
    rng = np.random.default_rng(7)
    z, t = rng.standard_normal((4, 3)) * 2, rng.uniform(0, 1, (4, 3))
    pw, w = rng.uniform(0.5, 3, 3), rng.uniform(0.5, 2, (4, 1))
    x, tt, tpw, tw = (leaf(a, device) for a in (z, t, pw, w))
    out = F.binary_cross_entropy_with_logits(x, tt, tw, reduction=reduction, pos_weight=tpw)
    np.testing.assert_allclose(out.numpy(), reduce(np_bce_with_logits(z, t, w, pw), reduction),
                               rtol=1e-10)
    fn = lambda a, b, c: F.binary_cross_entropy_with_logits(  # noqa: E731
        a, b, tw, reduction=reduction, pos_weight=c)
    assert md.gradcheck(fn, x, tt, tpw)
    assert md.gradgradcheck(fn, x, tt, tpw)
    # pos_weight of ones is the plain loss
    ones = md.tensor(np.ones(3), device=device)
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(x, tt, pos_weight=ones).item(),
        F.binary_cross_entropy_with_logits(x, tt).item(), rtol=1e-12)


def test_bce_with_logits_pos_weight_extremes_stay_finite(device):
    z = md.tensor(np.array([1000.0, -1000.0, 30.0], np.float32), device=device,
                  requires_grad=True)
    t = md.tensor(np.array([0.0, 1.0, 1.0], np.float32), device=device)
    pw = md.tensor(np.array([2.0], np.float32), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.binary_cross_entropy_with_logits(z, t, reduction="none", pos_weight=pw)
        loss.sum().backward()
    np.testing.assert_allclose(loss.numpy(), [1000, 2000, 2 * np.log1p(np.exp(-30.0))],
                               rtol=1e-6)
    np.testing.assert_allclose(z.grad.numpy(), [1, -2, 0], atol=1e-6)


def np_smooth_l1(d, beta):
    ad = np.abs(d)
    return np.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta)


@fixture_ok
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=seeds,
       reduction=st.sampled_from(REDUCTIONS), beta=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_l1_smooth_l1_and_huber_losses(device, shape, seed, reduction, beta):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 2
    # differences kept away from the kinks at 0 and at +-beta
    d = rng.choice([-1, 1], shape) * rng.uniform(0.05, 0.45, shape) * max(beta, 1.0) + \
        rng.choice([0.0, 1.0], shape) * np.sign(rng.standard_normal(shape)) * (max(beta, 1) + 0.1)
    b = a - d
    x, t = leaf(a, device), leaf(b, device)
    cases = [(F.l1_loss(x, t, reduction=reduction), np.abs(d),
              lambda u, v: F.l1_loss(u, v, reduction=reduction)),
             (F.smooth_l1_loss(x, t, reduction=reduction, beta=beta),
              np.abs(d) if beta == 0 else np_smooth_l1(d, beta),
              lambda u, v: F.smooth_l1_loss(u, v, reduction=reduction, beta=beta))]
    if beta > 0:
        huber = np.where(np.abs(d) < beta, 0.5 * d * d, beta * (np.abs(d) - 0.5 * beta))
        cases.append((F.huber_loss(x, t, reduction=reduction, delta=beta), huber,
                      lambda u, v: F.huber_loss(u, v, reduction=reduction, delta=beta)))
    for out, expected, fn in cases:
        np.testing.assert_allclose(out.numpy(), reduce(expected, reduction), rtol=1e-12)
        assert md.gradcheck(fn, x, t)


def test_l1_loss_gradient_at_zero_is_zero_as_in_torch(device):
    x = leaf([1.0, 2.0], device)
    F.l1_loss(x, md.tensor(np.array([1.0, 0.0]), device=device), reduction="sum").backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0])


def test_regression_loss_errors(device):
    x = leaf(np.zeros((2, 3)), device)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be >= 0"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="huber_loss: delta must be > 0"):
        F.huber_loss(x, x, delta=0.0)
    for fn in (F.l1_loss, F.smooth_l1_loss, F.huber_loss):
        with pytest.raises(ValueError, match=r"input has shape \(2, 3\) but target has shape"):
            fn(x, leaf(np.zeros(3), device))


# ---- loss modules (minidl/nn/loss.py) -----------------------------------------------------

def _module_cases(device):
    """(module, input, target, the functional call it must equal)."""
    import minidl.nn as nn
    rng = np.random.default_rng(8)
    z, labels = rng.standard_normal((4, 3)), md.tensor([0, 2, 1, 2], device=device)
    w = md.tensor(rng.uniform(0.5, 2, 3), device=device)
    p, b = rng.uniform(0.1, 0.9, (4, 3)), rng.uniform(0, 1, (4, 3))
    r = rng.standard_normal((4, 3)) * 2
    logp = np_log_softmax(z)
    pw = md.tensor(rng.uniform(0.5, 2, 3), device=device)
    T = lambda a: md.tensor(a, device=device)  # noqa: E731
    return [
        (nn.CrossEntropyLoss(w, ignore_index=1, label_smoothing=0.1), T(z), labels,
         lambda x, t: F.cross_entropy(x, t, w, ignore_index=1, label_smoothing=0.1)),
        (nn.CrossEntropyLoss(reduction="none"), T(z), labels,
         lambda x, t: F.cross_entropy(x, t, reduction="none")),
        (nn.NLLLoss(w, reduction="sum"), T(logp), labels,
         lambda x, t: F.nll_loss(x, t, w, reduction="sum")),
        (nn.BCELoss(w), T(p), T(b), lambda x, t: F.binary_cross_entropy(x, t, w)),
        (nn.BCEWithLogitsLoss(pos_weight=pw), T(z), T(b),
         lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)),
        (nn.MSELoss(), T(r), T(b), F.mse_loss),
        (nn.L1Loss(reduction="sum"), T(r), T(b), lambda x, t: F.l1_loss(x, t, reduction="sum")),
        (nn.SmoothL1Loss(beta=0.5), T(r), T(b), lambda x, t: F.smooth_l1_loss(x, t, beta=0.5)),
        (nn.HuberLoss(delta=0.5), T(r), T(b), lambda x, t: F.huber_loss(x, t, delta=0.5)),
    ]


def test_loss_modules_equal_their_functions(device):
    for module, x, t, fn in _module_cases(device):
        np.testing.assert_array_equal(module(x, t).numpy(), fn(x, t).numpy())
    # a module's gradient is its function's gradient
    module, x, t, fn = _module_cases(device)[0]
    x.requires_grad = True
    assert md.gradcheck(lambda a: module(a, t), x)


def test_loss_modules_keep_weights_as_buffers_and_check_arguments():
    import minidl.nn as nn
    crit = nn.CrossEntropyLoss(md.tensor([1.0, 2.0, 3.0]))
    assert list(crit.state_dict()) == ["weight"] and crit.weight.shape == (3,)
    assert list(nn.BCEWithLogitsLoss(pos_weight=md.tensor([2.0])).state_dict()) == ["pos_weight"]
    assert list(nn.MSELoss().state_dict()) == []
    assert repr(nn.CrossEntropyLoss(ignore_index=0, reduction="sum")) == \
        "CrossEntropyLoss(reduction='sum', ignore_index=0)"
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(TypeError, match="CrossEntropyLoss: the first argument is weight"):
        nn.CrossEntropyLoss("sum")
    with pytest.raises(ValueError, match="CrossEntropyLoss: label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=2.0)
    with pytest.raises(ValueError, match="HuberLoss: delta must be > 0"):
        nn.HuberLoss(delta=-1.0)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.L1Loss(size_average=False).reduction == "sum"


def test_cross_entropy_loss_trains_a_classifier():
    import minidl.nn as nn
    from minidl import optim
    rng = np.random.default_rng(9)
    x = md.tensor(rng.standard_normal((32, 4)).astype(np.float32))
    y = md.tensor((x.numpy()[:, 0] > 0).astype(np.int64))
    model, criterion = nn.Linear(4, 2), nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.5)
    first = criterion(model(x), y).item()
    for _ in range(20):
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
