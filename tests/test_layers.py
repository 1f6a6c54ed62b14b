"""Layers: initialisation (torch's defaults and nn.init), forward values, gradient checks with
parameters included, BatchNorm statistics, Normalization.adapt, graph nodes, frozen convs."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
import minidl.nn as nn
from minidl.autograd import Function
from minidl.nn import init

RNG = np.random.default_rng(0)


def randn(*shape, requires_grad=False, device="cpu"):
    return md.tensor(RNG.normal(size=shape), device=device, requires_grad=requires_grad)


def gradcheck_layer(layer, *inputs, seed=None):
    """Float64 gradcheck of ``layer(*inputs)`` w.r.t. the inputs AND every parameter."""
    layer.double()
    named = list(layer.named_parameters())
    names = [n for n, _ in named]
    leaves = [md.tensor(p.numpy().copy(), requires_grad=True) for _, p in named]
    n_in = len(inputs)

    def fn(*args):
        if seed is not None:
            md.manual_seed(seed)
        return nn.functional_call(layer, dict(zip(names, args[n_in:])), *args[:n_in])
    assert md.gradcheck(fn, *inputs, *leaves)


# ---- initialisation ---------------------------------------------------------------------

def _uniform_bound(a):
    return float(np.abs(a).max())


def test_linear_default_init_matches_torch_formula():
    md.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)    # kaiming_uniform(a=sqrt(5)) gives exactly 1/sqrt(fan_in)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert w.shape == (300, 400) and w.dtype == np.float32
    assert _uniform_bound(w) <= bound and _uniform_bound(w) > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert _uniform_bound(b) <= bound and b.std() == pytest.approx(bound / math.sqrt(3), rel=0.2)
    assert nn.Linear(3, 2, bias=False).bias is None


def test_conv_default_init_uses_receptive_field_fans():
    md.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    w = conv.weight.numpy()
    assert w.shape == (32, 16, 3, 3)
    assert _uniform_bound(w) <= bound and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert _uniform_bound(conv.bias.numpy()) <= bound
    grouped = nn.Conv2d(16, 32, 3, groups=4)
    assert grouped.weight.shape == (32, 4, 3, 3)
    assert _uniform_bound(grouped.weight.numpy()) <= 1 / math.sqrt(4 * 9)
    tconv = nn.ConvTranspose2d(8, 6, 4, stride=2)
    assert tconv.weight.shape == (8, 6, 4, 4)
    # torch computes the fan of a transposed-conv weight from dim 1 as well
    assert _uniform_bound(tconv.weight.numpy()) <= 1 / math.sqrt(6 * 16)


def test_fans():
    assert init.calculate_fan_in_and_fan_out(md.zeros(5, 3)) == (3, 5)
    assert init.calculate_fan_in_and_fan_out(md.zeros(8, 4, 3, 3)) == (36, 72)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.calculate_fan_in_and_fan_out(md.zeros(3))


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("conv2d") == 1.0 and init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("fn,expected_std", [
    (init.xavier_uniform_, math.sqrt(2 / (72 + 36))),
    (init.glorot_uniform_, math.sqrt(2 / (72 + 36))),
    (init.xavier_normal_, math.sqrt(2 / (72 + 36))),
    (init.glorot_normal_, math.sqrt(2 / (72 + 36))),
    (lambda t: init.kaiming_uniform_(t, nonlinearity="relu"), math.sqrt(2 / 36)),
    (lambda t: init.kaiming_normal_(t, nonlinearity="relu"), math.sqrt(2 / 36)),
    (lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 72)),
    (init.he_uniform_, math.sqrt(2 / 36)),
    (init.he_normal_, math.sqrt(2 / 36)),
    (init.lecun_normal_, math.sqrt(1 / 36)),
    (init.lecun_uniform_, math.sqrt(1 / 36)),
    (lambda t: init.normal_(t, 1.0, 0.5), 0.5),
    (lambda t: init.uniform_(t, -2.0, 2.0), 4 / math.sqrt(12)),
    (lambda t: init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0), 0.8796),
], ids=["xavier_u", "glorot_u", "xavier_n", "glorot_n", "kaiming_u", "kaiming_n",
        "kaiming_n_out", "he_u", "he_n", "lecun_n", "lecun_u", "normal", "uniform", "trunc"])
def test_initialiser_statistics(fn, expected_std, device):
    md.manual_seed(0)
    t8 = md.zeros(8, 4, 3, 3, device=device)           # fan_in 36, fan_out 72
    assert init.calculate_fan_in_and_fan_out(t8) == (36, 72)
    draws = []   # 16 draws of 288 values each, for a tight estimate of the std
    for _ in range(16):
        out = fn(t8)
        assert out is t8 and t8.device == device and t8.dtype == np.float32
        draws.append(t8.numpy().copy())
    values = np.concatenate([d.ravel() for d in draws])
    assert values.std() == pytest.approx(expected_std, rel=0.05)


def test_uniform_initialisers_respect_bounds():
    t = md.zeros(64, 32)
    init.xavier_uniform_(t, gain=2.0)
    assert np.abs(t.numpy()).max() <= 2.0 * math.sqrt(6 / 96)
    init.kaiming_uniform_(t, a=math.sqrt(5))
    assert np.abs(t.numpy()).max() <= 1 / math.sqrt(32)
    init.trunc_normal_(t, 0.0, 1.0, -0.5, 0.5)
    assert np.abs(t.numpy()).max() <= 0.5


def test_constant_initialisers_and_rebinding():
    t = md.randn(3, 2)
    shared = t.data
    init.zeros_(t)
    assert t.numpy().sum() == 0 and shared.sum() != 0     # data rebound, not written into
    init.ones_(t)
    assert t.numpy().sum() == 6
    init.constant_(t, 0.5)
    assert np.all(t.numpy() == 0.5) and t.dtype == np.float32
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(t, mode="fan_avg")


def test_init_is_seeded():
    md.manual_seed(5)
    a = nn.Linear(4, 4).weight.numpy()
    md.manual_seed(5)
    b = nn.Linear(4, 4).weight.numpy()
    np.testing.assert_array_equal(a, b)


# ---- forward values and gradient checks ---------------------------------------------------

def test_linear_forward_and_gradcheck():
    lin = nn.Linear(4, 3)
    x = randn(5, 4)
    np.testing.assert_allclose(lin(x.float()).numpy(),
                               x.numpy() @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5)
    gradcheck_layer(lin, randn(5, 4, requires_grad=True))
    gradcheck_layer(nn.Linear(3, 2, bias=False), randn(2, 4, 3, requires_grad=True))
    gradcheck_layer(nn.Linear(3, 2, activation="tanh"), randn(2, 3, requires_grad=True))


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(padding=(2, 1), dilation=2),
    dict(groups=2, bias=False),
    dict(padding="same"),
    dict(padding="valid", stride=(1, 2)),
], ids=["plain", "stride-pad", "dilation", "groups", "same", "valid"])
def test_conv2d_gradcheck(kw):
    conv = nn.Conv2d(4, 6, 3, **kw)
    gradcheck_layer(conv, randn(2, 4, 6, 5, requires_grad=True))


def test_conv2d_same_padding_with_even_kernel():
    conv = nn.Conv2d(2, 3, 4, padding="same", dilation=1)
    x = randn(1, 2, 7, 6)
    assert conv(x.float()).shape == (1, 3, 7, 6)
    gradcheck_layer(nn.Conv2d(2, 2, 2, padding="same"), randn(1, 2, 4, 3, requires_grad=True))
    with pytest.raises(ValueError, match="stride 1"):
        nn.Conv2d(2, 2, 3, padding="same", stride=2)


def test_conv2d_forward_is_the_layer_wiring_of_f_conv2d():
    conv = nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    x = md.randn(2, 3, 9, 8)
    expected = F.conv2d(x, conv.weight, conv.bias, stride=(2, 1), padding=(1, 1),
                        dilation=(1, 2))
    np.testing.assert_allclose(conv(x).numpy(), expected.numpy(), rtol=1e-6)
    assert conv(x).shape == (2, 5, (9 + 2 - 2 - 1) // 2 + 1, (8 + 2 - 2 - 1) // 1 + 1)


def test_conv_transpose2d_gradcheck_and_shape():
    tconv = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
    x = randn(2, 3, 4, 3, requires_grad=True)
    assert tconv(x.float()).shape == (2, 4, 8, 6)
    gradcheck_layer(tconv, x)
    gradcheck_layer(nn.ConvTranspose2d(4, 2, 2, groups=2, bias=False),
                    randn(1, 4, 3, 3, requires_grad=True))


@pytest.mark.parametrize("layer", [
    lambda: nn.MaxPool2d(2),
    lambda: nn.MaxPool2d(3, stride=2, padding=1),
    lambda: nn.AvgPool2d(2),
    lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    lambda: nn.AdaptiveAvgPool2d((2, 3)),
    lambda: nn.GlobalAvgPool2d(),
    lambda: nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=2.0),
    lambda: nn.Flatten(),
    lambda: nn.Reshape(3, 20),
], ids=["max", "max-pad", "avg", "avg-pad", "adaptive", "global", "lrn", "flatten", "reshape"])
def test_parameterless_layers_gradcheck(layer):
    m = layer()
    x = randn(2, 3, 4, 5, requires_grad=True)
    assert md.gradcheck(m, x)


def test_pool_layer_values():
    x = md.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).numpy()[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(nn.AvgPool2d(2)(x).numpy()[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(nn.AdaptiveAvgPool2d(1)(x).numpy().ravel(), [7.5])
    np.testing.assert_array_equal(nn.GlobalAvgPool2d()(x).numpy(), [[7.5]])
    assert "kernel_size=2, stride=2" in repr(nn.MaxPool2d(2))


def test_lrn_values():
    x = randn(2, 5, 3, 3)
    y = nn.LocalResponseNorm(3, alpha=0.3, beta=0.75, k=2.0)(x).numpy()
    a = x.numpy()
    sq = np.pad(a ** 2, ((0, 0), (1, 1), (0, 0), (0, 0)))
    div = (2.0 + 0.3 / 3 * (sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:])) ** 0.75
    np.testing.assert_allclose(y, a / div, rtol=1e-10)


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


def test_dropout_layer():
    md.manual_seed(0)
    d = nn.Dropout(0.25)
    x = md.ones(200, 50)
    y = d(x).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)
    gradcheck_layer(nn.Dropout(0.3), randn(4, 5, requires_grad=True), seed=3)


# ---- batch norm ---------------------------------------------------------------------------

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


def test_batchnorm_frozen_affine_still_normalises():
    bn = nn.BatchNorm2d(2, trainable=False)
    x = randn(3, 2, 2, 2, requires_grad=True)
    bn.double()(x).sum().backward()
    assert bn.weight.grad is None and x.grad is not None


# ---- Normalization ------------------------------------------------------------------------

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


# ---- graph nodes --------------------------------------------------------------------------

def test_residual_and_concat_values():
    block = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    res = nn.Residual(block)
    x = randn(2, 3).float()
    np.testing.assert_allclose(res(x).numpy(), block(x).numpy() + x.numpy(), rtol=1e-6)
    proj = nn.Residual(nn.Linear(3, 4), shortcut=nn.Linear(3, 4, bias=False))
    np.testing.assert_allclose(proj(x).numpy(), (proj.block(x) + proj.shortcut(x)).numpy(),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"Residual: block output \(2, 4\) and shortcut"):
        nn.Residual(nn.Linear(3, 4))(x)
    cat = nn.Concat(nn.Linear(3, 2), nn.Identity(), axis=1)
    out = cat(x)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out.numpy()[:, 2:], x.numpy())
    assert nn.Concat()(x, x).shape == (2, 6)
    assert nn.Concat(axis=0)([x, x]).shape == (4, 3)
    with pytest.raises(ValueError, match=r"Concat\(axis=1\): cannot join"):
        nn.Concat()(x, md.ones(3, 3))
    assert list(nn.Sequential(proj).state_dict()) == ["0.block.weight", "0.block.bias",
                                                      "0.shortcut.weight"]
    np.testing.assert_allclose(nn.Add()(x, x, x).numpy(), 3 * x.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="different shapes"):
        nn.Add()(x, md.ones(2, 2))


def test_gradcheck_through_a_network_with_residual_and_concat():
    md.manual_seed(0)
    inception = nn.Concat(
        nn.Conv2d(2, 2, 1),
        nn.Sequential(nn.Conv2d(2, 2, 1), nn.Tanh(), nn.Conv2d(2, 3, 3, padding=1)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(2, 1, 1)),
    )
    net = nn.Sequential(
        nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(2, 2, 3, padding=1))),
        nn.Tanh(),
        inception,
        nn.Residual(nn.Sequential(nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4)),
                    shortcut=nn.Conv2d(6, 4, 1, bias=False)),
        nn.Flatten(),
        nn.Linear(4 * 9, 2),
    )
    gradcheck_layer(net, randn(2, 2, 3, 3, requires_grad=True))


def test_graph_nodes_build_symbolic_graphs():
    inp = nn.Input((2, 4, 4))
    out = nn.Residual(nn.Conv2d(2, 2, 3, padding=1))(inp)
    out = nn.Concat(nn.Conv2d(2, 3, 1), nn.MaxPool2d(1))(out)
    assert out.shape == (None, 5, 4, 4)
    model = nn.GraphModule(inp, out)
    assert model(md.randn(3, 2, 4, 4)).shape == (3, 5, 4, 4)


# ---- freezing a conv layer skips its weight gradient --------------------------------------

def _record_functions(monkeypatch):
    calls = []
    orig = Function.__call__

    def call(fn, *inputs):
        out = orig(fn, *inputs)
        for o in (out if isinstance(out, tuple) else (out,)):
            calls.append((type(fn).__name__, o.shape))
        return out
    monkeypatch.setattr(Function, "__call__", call)
    return calls


def test_frozen_conv_skips_weight_gradient(monkeypatch):
    # Shapes chosen so that only the weight gradient (and its (7, 3*2*5) GEMM form) has
    # them: out=7, in=3, kernel 2x5.
    import minidl.kernels as kernels
    conv = nn.Conv2d(3, 7, (2, 5))
    x = md.randn(2, 3, 6, 9, requires_grad=True)
    calls = _record_functions(monkeypatch)
    weight_shapes = {(7, 3, 2, 5), (7, 30), (30, 7), (7,)}
    dw_kernel_runs = []
    real_kernel = kernels.conv2d_grad_weight

    def counting_kernel(*args, **kwargs):
        dw_kernel_runs.append(1)
        return real_kernel(*args, **kwargs)
    monkeypatch.setattr(kernels, "conv2d_grad_weight", counting_kernel)

    y = conv(x)
    calls.clear()
    y.sum().backward()
    assert weight_shapes & {s for _, s in calls}, "expected a weight gradient when trainable"
    assert conv.weight.grad is not None and len(dw_kernel_runs) == 1

    conv.freeze()
    x.grad = None
    y = conv(x)
    calls.clear()
    y.sum().backward()
    assert not weight_shapes & {s for _, s in calls}, calls
    assert len(dw_kernel_runs) == 1          # the dW kernel did not run again
    assert conv.weight.grad is None and conv.bias.grad is None
    assert x.grad is not None and x.grad.shape == x.shape


def test_layer_on_device(device):
    md.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3),
                        nn.Normalization(0.0, 2.0)).to(device)
    x = md.randn(2, 2, 4, 4, device=device)
    y = net(x)
    assert y.device == device and y.shape == (2, 3)
    y.sum().backward()
    assert all(p.grad.device == device for p in net.parameters())
    cpu = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3),
                        nn.Normalization(0.0, 2.0))
    cpu.load_state_dict(net.state_dict())
    np.testing.assert_allclose(cpu(x.to("cpu")).numpy(), y.numpy(), rtol=1e-4, atol=1e-5)


# ---- against torch ------------------------------------------------------------------------

@pytest.mark.torch
def test_layers_match_torch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    pairs = [
        (nn.Linear(5, 3), tnn.Linear(5, 3), (4, 5)),
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), tnn.Conv2d(4, 6, 3, 2, 1, groups=2),
         (2, 4, 7, 7)),
        (nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), tnn.ConvTranspose2d(4, 2, 4, 2, 1),
         (2, 4, 5, 5)),
        (nn.BatchNorm2d(3), tnn.BatchNorm2d(3), (4, 3, 3, 3)),
        (nn.BatchNorm1d(3), tnn.BatchNorm1d(3), (6, 3)),
        (nn.LocalResponseNorm(3, 1e-2, 0.75, 2.0), tnn.LocalResponseNorm(3, 1e-2, 0.75, 2.0),
         (2, 5, 3, 3)),
        (nn.MaxPool2d(3, 2, 1, ceil_mode=True), tnn.MaxPool2d(3, 2, 1, ceil_mode=True),
         (1, 2, 7, 7)),
        (nn.AvgPool2d(3, 2, 1, count_include_pad=False),
         tnn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 2, 7, 7)),
        (nn.AdaptiveAvgPool2d((3, 2)), tnn.AdaptiveAvgPool2d((3, 2)), (1, 2, 7, 5)),
    ]
    for ours, theirs, shape in pairs:
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        for mode in ("train", "eval"):
            getattr(ours, mode)()
            getattr(theirs, mode)()
            y = ours(md.tensor(x))
            ty = theirs(torch.tensor(x))
            np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{type(ours).__name__} {mode}")
        for k, v in theirs.state_dict().items():   # running statistics updated alike
            np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-5,
                                       err_msg=k)
