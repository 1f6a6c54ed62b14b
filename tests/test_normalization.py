"""batch_norm and local_response_norm: oracles, running statistics, gradchecks, errors; the
layers BatchNorm1d/2d, LocalResponseNorm and Normalization (fixed statistics, adapt)."""
from __future__ import annotations

import numpy as np
import pytest
from layer_checks import assert_layer_matches_torch, gradcheck_layer, randn

import minidl as md
import minidl.nn as nn
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


# ---- the layers: nn.BatchNorm1d/2d, LocalResponseNorm, Normalization -------------------

def test_lrn_layer_gradcheck():
    m = nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=2.0)
    x = randn(2, 3, 4, 5, requires_grad=True)
    assert md.gradcheck(m, x)


def test_lrn_values():
    x = randn(2, 5, 3, 3)
    y = nn.LocalResponseNorm(3, alpha=0.3, beta=0.75, k=2.0)(x).numpy()
    a = x.numpy()
    sq = np.pad(a ** 2, ((0, 0), (1, 1), (0, 0), (0, 0)))
    div = (2.0 + 0.3 / 3 * (sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:])) ** 0.75
    np.testing.assert_allclose(y, a / div, rtol=1e-10)


def test_batchnorm2d_training_statistics():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    x = randn(4, 3, 5, 5).float() * 2 + 1
    y = bn(x).numpy()
    a = x.numpy()
    mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y, (a - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5),
                               rtol=1e-4, atol=1e-5)
    n = 4 * 25
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.8 + 0.2 * var * n / (n - 1), rtol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1
    bn.eval()
    y_eval = bn(x).numpy()
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    np.testing.assert_allclose(y_eval, (a - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5),
                               rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1        # eval does not count


def test_batchnorm_cumulative_average_and_no_tracking():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [randn(6, 2).float() + i for i in range(3)]
    for b in batches:
        bn(b)
    np.testing.assert_allclose(bn.running_mean.numpy(),
                               np.mean([b.numpy().mean(0) for b in batches], axis=0), rtol=1e-5)
    free = nn.BatchNorm1d(2, track_running_stats=False, affine=False)
    assert list(free.state_dict()) == [] and list(free.parameters()) == []
    free.eval()
    out = free(batches[2]).numpy()                    # still uses batch statistics
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(training):
    bn1 = nn.BatchNorm1d(3)
    bn1.running_mean.data = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    bn1.running_var.data = np.array([1.5, 0.5, 2.0], dtype=np.float32)
    bn1.train(training)
    with md.no_grad():
        bn1.weight.data = np.array([1.5, 0.5, -1.0], dtype=np.float32)
    gradcheck_layer(bn1, randn(5, 3, requires_grad=True))
    gradcheck_layer(nn.BatchNorm1d(2).train(training), randn(4, 2, 3, requires_grad=True))
    gradcheck_layer(nn.BatchNorm2d(2).train(training), randn(3, 2, 2, 3, requires_grad=True))


def test_normalization_layers_check_their_sizes_when_built():
    with pytest.raises(ValueError, match=r"BatchNorm2d: num_features must be a positive int, "
                                         r"got 0"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match=r"BatchNorm1d: num_features must be a positive int, "
                                         r"got 2.0"):
        nn.BatchNorm1d(2.0)
    with pytest.raises(ValueError, match=r"LocalResponseNorm: size must be a positive int, "
                                         r"got 0"):
        nn.LocalResponseNorm(0)


def test_batchnorm_frozen_affine_still_normalises():
    bn = nn.BatchNorm2d(2, trainable=False)
    x = randn(3, 2, 2, 2, requires_grad=True)
    bn.double()(x).sum().backward()
    assert bn.weight.grad is None and x.grad is not None


def test_normalization_fixed_statistics():
    norm = nn.Normalization(mean=[1.0, 2.0], std=[2.0, 4.0])
    x = md.tensor([[3.0, 2.0], [1.0, 10.0]])
    np.testing.assert_allclose(norm(x).numpy(), [[1.0, 0.0], [0.0, 2.0]])
    assert list(norm.state_dict()) == ["mean", "std"] and list(norm.parameters()) == []
    img = nn.Normalization(mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.1])
    xi = md.ones(2, 3, 4, 4)
    np.testing.assert_allclose(img(xi).numpy()[0, :, 0, 0], [2.5, 3.0, 7.0], rtol=1e-6)
    scalar = nn.Normalization(0.5, 0.25)
    np.testing.assert_allclose(scalar(md.ones(2, 3)).numpy(), 2.0)
    assert md.gradcheck(norm.double(), randn(3, 2, requires_grad=True))


def test_normalization_adapt_matches_numpy():
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(500, 4)) * [1, 2, 3, 4] + [0, 10, -5, 2]).astype(np.float32)
    norm = nn.Normalization().adapt(data)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.std.numpy(), data.std(0), rtol=1e-4)
    out = norm(md.tensor(data)).numpy()
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1, rtol=1e-3)
    # from batches (a DataLoader-like iterable of (x, y)) the result is the same
    batched = nn.Normalization().adapt([(data[i:i + 64], None) for i in range(0, 500, 64)])
    np.testing.assert_allclose(batched.std.numpy(), norm.std.numpy(), rtol=1e-5)
    # images: per channel over N, H, W
    imgs = rng.normal(size=(10, 3, 5, 5)) + np.array([1.0, 2.0, 3.0])[:, None, None]
    per_channel = nn.Normalization().adapt(md.tensor(imgs))
    np.testing.assert_allclose(per_channel.mean.numpy(), imgs.mean(axis=(0, 2, 3)), rtol=1e-5)
    whole = nn.Normalization(axis=None).adapt(imgs)
    assert whole.mean.shape == (1,)
    constant = nn.Normalization().adapt(np.ones((5, 2)))
    assert np.all(np.isfinite(constant(md.ones(1, 2)).numpy()))   # std clamped at eps


def test_normalization_errors_and_graph_before_adapt():
    with pytest.raises(RuntimeError, match="adapt"):
        nn.Normalization()(md.ones(2, 2))
    with pytest.raises(ValueError, match="both mean and std"):
        nn.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="2 values but the input"):
        nn.Normalization([0.0, 0.0], [1.0, 1.0])(md.ones(2, 3))
    norm = nn.Normalization()
    inp = nn.Input((3,))
    model = nn.GraphModule(inp, nn.Linear(3, 1)(norm(inp)))   # built before adapt, like Keras
    norm.adapt(np.random.default_rng(0).normal(size=(20, 3)))
    assert model(md.ones(4, 3)).shape == (4, 1)


@pytest.mark.torch
@pytest.mark.parametrize("make", [
    lambda tnn: (nn.BatchNorm2d(3), tnn.BatchNorm2d(3), (4, 3, 3, 3)),
    lambda tnn: (nn.BatchNorm1d(3), tnn.BatchNorm1d(3), (6, 3)),
    lambda tnn: (nn.LocalResponseNorm(3, 1e-2, 0.75, 2.0), tnn.LocalResponseNorm(3, 1e-2, 0.75, 2.0),
     (2, 5, 3, 3)),
], ids=["batchnorm2d", "batchnorm1d", "lrn"])
def test_normalization_layers_match_torch(make):
    torch = pytest.importorskip("torch")
    assert_layer_matches_torch(*make(torch.nn))
