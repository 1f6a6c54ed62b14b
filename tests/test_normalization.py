"""batch_norm and local_response_norm: oracles, running statistics, gradchecks, errors."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl.functional import normalization
from minidl.functional.normalization import (
    BatchNormGrad,
    _Channels,
    batch_norm,
    local_response_norm,
)

SHAPES = [(6, 3), (4, 3, 3, 2)]


def naive_batch_norm(x, mean, var, gamma, beta, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) \
        + beta.reshape(shape)


def _t(device, a, grad=False):
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training_forward_and_running_stats(device, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = _t(device, [0.5, -0.5, 0.0]), _t(device, [1.0, 2.0, 3.0])
    y = batch_norm(_t(device, x), rm, rv, _t(device, gamma), _t(device, beta), training=True,
                   momentum=0.2, eps=1e-3)
    axes = (0,) + tuple(range(2, len(shape)))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    np.testing.assert_allclose(y.numpy(), naive_batch_norm(x, mean, var, gamma, beta, 1e-3),
                               atol=1e-12)
    m = x.size // 3
    np.testing.assert_allclose(rm.numpy(), 0.8 * np.array([0.5, -0.5, 0.0]) + 0.2 * mean)
    np.testing.assert_allclose(rv.numpy(), 0.8 * np.array([1.0, 2.0, 3.0])
                               + 0.2 * var * m / (m - 1))        # unbiased running variance


def test_batch_norm_updates_plain_arrays_in_place(xp):
    x = xp.asarray(np.random.default_rng(1).standard_normal((5, 2, 3, 3)))
    rm, rv = xp.zeros(2), xp.ones(2)
    batch_norm(x, rm, rv, training=True)
    assert float(abs(rm).sum()) > 0 and float(abs(rv - 1).sum()) > 0


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_eval_uses_running_stats(device, shape):
    rng = np.random.default_rng(2)
    x, gamma, beta = rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = np.array([0.1, 0.2, -0.3]), np.array([0.5, 1.5, 2.0])
    y = batch_norm(_t(device, x), _t(device, rm), _t(device, rv), _t(device, gamma),
                   _t(device, beta), training=False)
    np.testing.assert_allclose(y.numpy(), naive_batch_norm(x, rm, rv, gamma, beta, 1e-5))
    y = batch_norm(_t(device, x), _t(device, rm), _t(device, rv))
    np.testing.assert_allclose(y.numpy(), naive_batch_norm(x, rm, rv, np.ones(3), np.zeros(3),
                                                           1e-5))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck_all_inputs(device, shape, training):
    rng = np.random.default_rng(3)
    x = _t(device, rng.standard_normal(shape), grad=True)
    gamma = _t(device, rng.standard_normal(3), grad=True)
    beta = _t(device, rng.standard_normal(3), grad=True)
    rm, rv = _t(device, rng.standard_normal(3)), _t(device, rng.random(3) + 0.5)
    assert md.gradcheck(lambda x, g, b: batch_norm(x, rm.detach(), rv.detach(), g, b,
                                                   training=training), x, gamma, beta)
    assert md.gradcheck(lambda x: batch_norm(x, None, None, training=True), x) if training \
        else True


def test_batch_norm_training_backward_is_fused(device):
    x = _t(device, np.random.default_rng(4).standard_normal((4, 3, 2, 2)), grad=True)
    g = _t(device, np.ones(3), grad=True)
    y = batch_norm(x, None, None, g, None, training=True)
    gx, = md.grad((y * y).sum(), [x], create_graph=True)
    assert isinstance(gx.creator, BatchNormGrad)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_gradgradcheck(device, shape):
    rng = np.random.default_rng(5)
    x = _t(device, rng.standard_normal(shape), grad=True)
    gamma = _t(device, rng.standard_normal(3), grad=True)
    beta = _t(device, rng.standard_normal(3), grad=True)
    assert md.gradgradcheck(lambda x, g, b: batch_norm(x, None, None, g, b, training=True),
                            x, gamma, beta)


def test_batch_norm_train_and_eval_agree_after_running_stats_converge(device):
    rng = np.random.default_rng(6)
    x = md.tensor((rng.standard_normal((64, 4, 3, 3)) * 2 + 3).astype(np.float32), device=device)
    gamma, beta = md.randn(4, device=device), md.randn(4, device=device)
    rm, rv = md.zeros(4, device=device), md.ones(4, device=device)
    for _ in range(200):
        y_train = batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1)
    y_eval = batch_norm(x, rm, rv, gamma, beta, training=False)
    xn = x.numpy().astype(np.float64)
    np.testing.assert_allclose(rm.numpy(), xn.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(rv.numpy(), xn.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    # the outputs agree up to the unbiased/biased variance factor sqrt((m-1)/m), m = 64*9
    m = 64 * 9
    b = beta.numpy()[None, :, None, None]
    np.testing.assert_allclose(y_eval.numpy(), b + (y_train.numpy() - b) * np.sqrt((m - 1) / m),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y_eval.numpy(), y_train.numpy(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("n_threads", [1, 3])
def test_batch_norm_channels_last_matches_nchw_and_keeps_layout(monkeypatch, threads, n_threads):
    # channels-last arrays (what the conv kernels return) take the (M/r, r*C) path, here in
    # many row blocks, on worker threads or not; an upstream gradient in another layout is
    # copied into x's layout first
    monkeypatch.setattr(normalization, "_BLOCK_BYTES", 256)
    threads(n_threads)
    rng = np.random.default_rng(7)
    x_nhwc = rng.standard_normal((4, 5, 6, 8)) * 2 + 3                # C = 8, m = 120
    x_cl = x_nhwc.transpose(0, 3, 1, 2)
    gy = rng.standard_normal(x_cl.shape)                               # NCHW memory
    ch = _Channels(x_cl)
    assert ch.r == 8 and _Channels(np.ascontiguousarray(x_cl)).r == 0
    assert len(ch.blocks) > 1 and ch.threads == n_threads
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    outs = []
    for xa in (x_cl, np.ascontiguousarray(x_cl)):
        x = md.tensor(xa, requires_grad=True)
        x.data = xa                                 # md.tensor copies; keep the layout
        g, b = md.tensor(gamma, requires_grad=True), md.tensor(beta, requires_grad=True)
        y = batch_norm(x, None, None, g, b, training=True)
        y.backward(md.tensor(gy))
        outs.append((y.data, x.grad.numpy(), g.grad.numpy(), b.grad.numpy()))
    assert outs[0][0].strides[1] < outs[0][0].strides[3]              # still channels-last
    mean, var = x_cl.mean(axis=(0, 2, 3)), x_cl.var(axis=(0, 2, 3))
    np.testing.assert_allclose(outs[0][0], naive_batch_norm(x_cl, mean, var, gamma, beta, 1e-5),
                               atol=1e-12)
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_batch_norm_float32(device):
    x = md.randn(8, 4, 5, 5, device=device)
    rm, rv = md.zeros(4, device=device), md.ones(4, device=device)
    y = batch_norm(x, rm, rv, md.ones(4, device=device), md.zeros(4, device=device), True)
    assert y.dtype == np.float32 and rm.dtype == np.float32
    np.testing.assert_allclose(y.numpy().mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.numpy().var(axis=(0, 2, 3)), 1, atol=1e-3)


def test_batch_norm_errors():
    x = md.zeros(4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean of shape \(4,\) does not "
                                         r"match the 3 channels of input \(4, 3, 2, 2\)"):
        batch_norm(x, md.zeros(4), md.ones(3), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: weight of shape \(2,\)"):
        batch_norm(x, None, None, md.zeros(2), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel"):
        batch_norm(md.zeros(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: eval mode .* needs running_mean"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"batch_norm: expected an input \(N, C, \.\.\.\)"):
        batch_norm(md.zeros(3), None, None, training=True)


def naive_lrn(x, size, alpha, beta, k):
    N, C = x.shape[:2]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        s = (x[:, lo:hi] ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (k + alpha / size * s) ** beta
    return y


@pytest.mark.parametrize("size", [1, 2, 3, 5, 9])
def test_local_response_norm(device, size):
    rng = np.random.default_rng(7)
    x = _t(device, rng.standard_normal((2, 6, 3, 3)), grad=True)
    y = local_response_norm(x, size, alpha=0.3, beta=0.75, k=1.5)
    np.testing.assert_allclose(y.numpy(), naive_lrn(x.numpy(), size, 0.3, 0.75, 1.5),
                               atol=1e-12)
    assert md.gradcheck(lambda x: local_response_norm(x, size, alpha=0.3, k=1.5), x)


def test_local_response_norm_gradgradcheck_and_errors(device):
    x = _t(device, np.random.default_rng(8).standard_normal((1, 4, 2, 2)), grad=True)
    assert md.gradgradcheck(lambda x: local_response_norm(x, 3, alpha=0.5), x)
    with pytest.raises(ValueError, match=r"local_response_norm: expected an input"):
        local_response_norm(md.zeros(4, 3), 2)
    with pytest.raises(ValueError, match=r"local_response_norm: size must be a positive int"):
        local_response_norm(md.zeros(1, 4, 2, 2), 0)


@pytest.mark.torch
def test_batch_norm_and_lrn_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(13)
    x, g, b = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal(3), rng.standard_normal(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, g, b))
    ty = F.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=0.3)
    rm, rv = md.zeros(3, dtype="float64"), md.ones(3, dtype="float64")
    mx, mg, mb = (md.tensor(a, requires_grad=True) for a in (x, g, b))
    my = batch_norm(mx, rm, rv, mg, mb, training=True, momentum=0.3)
    np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), atol=1e-12)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), atol=1e-12)
    gy = rng.standard_normal(x.shape)
    ty.backward(torch.tensor(gy))
    my.backward(md.tensor(gy))
    for m, t in ((mx, tx), (mg, tg), (mb, tb)):
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(local_response_norm(md.tensor(x), 4, 0.2, 0.6, 1.3).numpy(),
                               F.local_response_norm(torch.tensor(x), 4, 0.2, 0.6, 1.3).numpy(),
                               atol=1e-12)
