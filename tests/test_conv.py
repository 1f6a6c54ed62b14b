"""F.conv2d against the reference (minidl/kernels/reference.py), F.conv_transpose2d against a
loop oracle; gradchecks, double backward, errors. The layers nn.Conv2d and
nn.ConvTranspose2d: initialisation, gradchecks with the parameters, 'same' padding, argument
checks, frozen weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layer_checks import assert_layer_matches_torch, gradcheck_layer, randn, uniform_bound

import minidl as md
import minidl.functional as F
import minidl.nn as nn
from minidl import kernels
from minidl.autograd import Function
from minidl.functional.conv import (
    Conv2dGradInput,
    Conv2dGradWeight,
    _conv_pads,
    conv2d,
    conv_transpose2d,
)
from minidl.functional.validation import to_pair
from minidl.kernels import reference

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def fewer(n: int) -> settings:
    """Settings for slow (gradcheck) property tests."""
    return settings(max_examples=n, suppress_health_check=[HealthCheck.function_scoped_fixture])


def naive_conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    """Direct definition: every input pixel scatters x * w into the output, by loops."""
    N, Cin, H, W = x.shape
    _, Cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + output_padding[0] + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + output_padding[1] + 1
    full = np.zeros((N, Cog * groups, Ho + 2 * ph + sh + dh * kh, Wo + 2 * pw + sw + dw * kw))
    Cig = Cin // groups
    for c in range(Cin):
        g = c // Cig
        for h in range(H):
            for wi in range(W):
                for i in range(kh):
                    for j in range(kw):
                        full[:, g * Cog:(g + 1) * Cog, h * sh + i * dh, wi * sw + j * dw] += \
                            x[:, c, h, wi, None] * w[c, :, i, j]
    y = full[:, :, ph:ph + Ho, pw:pw + Wo]
    return y if b is None else y + b[None, :, None, None]


@st.composite
def conv_case(draw):
    groups = draw(st.integers(1, 3))
    # 5 input / 6 output channels per group reach every CPU kernel path (FEW_CHANNELS,
    # offset-major dx when 2C <= K, channels-last columns)
    cg, kg = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 2, 3, 6]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    H = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 9))
    W = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 9))
    N = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return N, groups, cg, kg, H, W, (kh, kw), stride, padding, dilation, bias


def _tensors(device, rng, *shapes, dtype=np.float64, grad=True):
    return [md.tensor(rng.standard_normal(s).astype(dtype), device=device, requires_grad=grad)
            for s in shapes]


@FIXTURE_OK
@given(conv_case())
def test_conv2d_matches_reference(device, case):
    N, G, cg, kg, H, W, k, stride, padding, dilation, bias = case
    rng = np.random.default_rng(0)
    x, w, b = _tensors(device, rng, (N, G * cg, H, W), (G * kg, cg, *k), (G * kg,), grad=False)
    y = conv2d(x, w, b if bias else None, stride, padding, dilation, G)
    ref = reference.conv2d(x.numpy(), w.numpy(), b.numpy() if bias else None, stride,
                       (padding[0], padding[0], padding[1], padding[1]), dilation, G)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)


@fewer(15)
@given(conv_case())
def test_conv2d_gradcheck_all_inputs(device, case):
    N, G, cg, kg, H, W, k, stride, padding, dilation, bias = case
    rng = np.random.default_rng(1)
    x, w, b = _tensors(device, rng, (N, G * cg, H, W), (G * kg, cg, *k), (G * kg,))
    if bias:
        assert md.gradcheck(lambda x, w, b: conv2d(x, w, b, stride, padding, dilation, G),
                            x, w, b)
    else:
        assert md.gradcheck(lambda x, w: conv2d(x, w, None, stride, padding, dilation, G), x, w)


PATH_CASES = [  # C, K, kernel, stride, padding, dilation: the CPU kernel path each one takes
    (2, 3, (3, 2), (2, 1), (1, 2), (1, 2), "_conv_few_channels"),
    (2, 6, (3, 3), 1, (2, 0), (2, 1), "_grad_input_offset_major"),
    (3, 6, (4, 2), 1, "same", 1, "_grad_input_offset_major"),
    (5, 3, (3, 3), 1, 1, 1, "_conv_nhwc"),
    (5, 4, (2, 3), (2, 2), (0, 1), 1, "_col2im_block"),
]


@pytest.mark.parametrize("case", PATH_CASES)
def test_conv2d_every_cpu_kernel_path(monkeypatch, case):
    from minidl.kernels import _numpy

    C, K, k, stride, padding, dilation, path = case
    calls = []
    original = getattr(_numpy, path)
    monkeypatch.setattr(_numpy, path, lambda *a, **kw: calls.append(1) or original(*a, **kw))
    rng = np.random.default_rng(2)
    x, w, b = _tensors("cpu", rng, (2, C, 7, 6), (K, C, *k), (K,))
    y = conv2d(x, w, b, stride, padding, dilation)
    s2, d2 = to_pair(stride, "stride", "t"), to_pair(dilation, "dilation", "t")
    pads = _conv_pads(padding, k, s2, d2, "t")
    ref = reference.conv2d(x.numpy(), w.numpy(), b.numpy(), s2, pads, d2, 1)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    assert md.gradcheck(lambda x, w, b: conv2d(x, w, b, stride, padding, dilation), x, w, b)
    assert calls, f"{path} was not used"


def test_conv2d_float32_close_to_float64(device):
    rng = np.random.default_rng(2)
    x64, w64, b64 = _tensors(device, rng, (3, 6, 9, 8), (4, 6, 3, 3), (4,), grad=False)
    y64 = conv2d(x64, w64, b64, 1, 1).numpy()
    y32 = conv2d(x64.float(), w64.float(), b64.float(), 1, 1)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), y64, rtol=1e-4, atol=1e-4)


def test_conv2d_gradgradcheck(device):
    rng = np.random.default_rng(3)
    x, w, b = _tensors(device, rng, (2, 2, 5, 4), (3, 2, 3, 2), (3,))
    assert md.gradgradcheck(lambda x, w, b: conv2d(x, w, b, stride=(2, 1), padding=1,
                                                   dilation=(1, 2)), x, w, b)


def test_conv2d_gradgradcheck_grouped(device):
    rng = np.random.default_rng(4)
    x, w = _tensors(device, rng, (1, 4, 4, 4), (4, 2, 2, 2))
    assert md.gradgradcheck(lambda x, w: conv2d(x, w, stride=1, padding=1, groups=2), x, w)


@pytest.mark.parametrize("padding", ["same", "valid", 1, (2, 0)])
def test_conv2d_padding_forms(device, padding):
    rng = np.random.default_rng(5)
    x, w = _tensors(device, rng, (2, 3, 6, 7), (2, 3, 4, 3), grad=False)
    y = conv2d(x, w, padding=padding, dilation=(1, 2))
    if padding == "same":
        assert y.shape == (2, 2, 6, 7)
        pads = (1, 2, 2, 2)     # totals 3 and 4, the odd extra at the bottom (like torch)
    elif padding == "valid":
        pads = (0, 0, 0, 0)
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        pads = (ph, ph, pw, pw)
    np.testing.assert_allclose(y.numpy(), reference.conv2d(x.numpy(), w.numpy(), None, (1, 1),
                                                       pads, (1, 2), 1), atol=1e-10)


def test_depthwise_conv2d(device):
    rng = np.random.default_rng(6)
    x, w, b = _tensors(device, rng, (2, 4, 6, 6), (8, 1, 3, 3), (8,))   # multiplier 2
    y = conv2d(x, w, b, padding=1, groups=4)
    ref = reference.conv2d(x.numpy(), w.numpy(), b.numpy(), (1, 1), (1, 1, 1, 1), (1, 1), 4)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    assert md.gradcheck(lambda x, w, b: conv2d(x, w, b, stride=2, padding=1, groups=4), x, w, b)


def test_conv2d_computes_only_needed_gradients(monkeypatch):
    calls = {"grad_input": 0, "grad_weight": 0}
    real_gi, real_gw = kernels.conv2d_grad_input, kernels.conv2d_grad_weight

    def gi(*a, **k):
        calls["grad_input"] += 1
        return real_gi(*a, **k)

    def gw(*a, **k):
        calls["grad_weight"] += 1
        return real_gw(*a, **k)

    monkeypatch.setattr(kernels, "conv2d_grad_input", gi)
    monkeypatch.setattr(kernels, "conv2d_grad_weight", gw)
    rng = np.random.default_rng(7)
    x = md.tensor(rng.standard_normal((2, 3, 5, 5)))                       # first layer
    w = md.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    conv2d(x, w).sum().backward()
    assert calls == {"grad_input": 0, "grad_weight": 1} and x.grad is None
    x.requires_grad = True
    w_frozen = md.tensor(w.numpy())                                        # frozen layer
    conv2d(x, w_frozen).sum().backward()
    assert calls == {"grad_input": 1, "grad_weight": 1} and w_frozen.grad is None


def test_conv2d_backward_is_made_of_grad_functions():
    x = md.randn(1, 2, 4, 4, requires_grad=True)
    w = md.randn(3, 2, 3, 3, requires_grad=True)
    y = conv2d(x, w, padding=1)
    gx, gw = md.grad(y.sum(), [x, w], create_graph=True)
    assert isinstance(gx.creator, Conv2dGradInput) and isinstance(gw.creator, Conv2dGradWeight)


def test_conv2d_graph_is_freed_after_backward():
    import gc
    import weakref

    x = md.randn(1, 2, 4, 4, requires_grad=True)
    w = md.randn(3, 2, 3, 3, requires_grad=True)
    y = conv2d(x, w, padding=1)
    ref = weakref.ref(y.creator)
    y.sum().backward()
    del y
    gc.collect()
    assert ref() is None


@st.composite
def transpose_case(draw):
    groups = draw(st.integers(1, 2))
    cig, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = (draw(st.integers(0, stride[0] - 1)), draw(st.integers(0, stride[1] - 1)))
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    for size, kk, s, p, d, o in zip((H, W), k, stride, padding, dilation, output_padding):
        if (size - 1) * s - 2 * p + d * (kk - 1) + o + 1 < 1:
            padding = (0, 0)
    return groups, cig, cog, H, W, k, stride, padding, output_padding, dilation


@fewer(20)
@given(transpose_case())
def test_conv_transpose2d_matches_loops_and_gradcheck(device, case):
    G, cig, cog, H, W, k, stride, padding, output_padding, dilation = case
    rng = np.random.default_rng(8)
    x, w, b = _tensors(device, rng, (2, G * cig, H, W), (G * cig, cog, *k), (G * cog,))
    y = conv_transpose2d(x, w, b, stride, padding, output_padding, G, dilation)
    ref = naive_conv_transpose2d(x.numpy(), w.numpy(), b.numpy(), stride, padding,
                                 output_padding, G, dilation)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    assert md.gradcheck(lambda x, w, b: conv_transpose2d(x, w, b, stride, padding,
                                                         output_padding, G, dilation), x, w, b)


def test_conv_transpose2d_dcgan_shape_and_gradgradcheck(device):
    rng = np.random.default_rng(9)
    x, w, b = _tensors(device, rng, (1, 3, 3, 3), (3, 2, 4, 4), (2,))
    y = conv_transpose2d(x, w, b, stride=2, padding=1)     # DCGAN: doubles H and W
    assert y.shape == (1, 2, 6, 6)
    assert md.gradgradcheck(lambda x, w, b: conv_transpose2d(x, w, b, 2, 1), x, w, b)


def test_conv2d_errors():
    x, w = md.zeros(2, 3, 8, 8), md.zeros(6, 1, 5, 5)
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but weight expects 1 "
                                         r"\(weight shape \(6, 1, 5, 5\)"):
        conv2d(x, w)
    with pytest.raises(ValueError, match=r"conv2d: kernel \(5, 5\).*larger than the padded "
                                         r"input \(4, 4\)"):
        conv2d(md.zeros(1, 1, 4, 4), w)
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D input.*\(3, 8, 8\)"):
        conv2d(md.zeros(3, 8, 8), md.zeros(6, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D weight.*\(6, 3, 3\)"):
        conv2d(x, md.zeros(6, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: stride must be a positive int or pair, got \(0, 0\)"):
        conv2d(x, md.zeros(6, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match=r"conv2d: input channels \(3\) and output channels \(6\) must be "
                                         r"divisible by groups \(2\); input shape \(2, 3, 8, 8\)"):
        conv2d(x, md.zeros(6, 1, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"conv2d: padding='same' needs stride 1"):
        conv2d(x, md.zeros(6, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match=r"conv2d: bias of shape \(5,\)"):
        conv2d(x, md.zeros(6, 3, 3, 3), md.zeros(5))
    with pytest.raises(ValueError, match=r"conv2d: dilation must be a positive int or pair"):
        conv2d(x, md.zeros(6, 3, 3, 3), dilation=0)
    with pytest.raises(ValueError, match=r"conv2d: groups must be a positive int, got 0"):
        conv2d(x, md.zeros(6, 3, 3, 3), groups=0)
    with pytest.raises(ValueError, match=r"conv2d: padding must be an int, a pair, 'same' or "
                                         r"'valid', got 'full'"):
        conv2d(x, md.zeros(6, 3, 3, 3), padding="full")
    with pytest.raises(TypeError, match=r"conv2d: input must be a floating-point tensor, got "
                                        r"dtype int64 \(shape \(2, 3, 8, 8\)\)"):
        conv2d(md.tensor(np.zeros((2, 3, 8, 8), np.int64)), md.zeros(6, 3, 3, 3))
    with pytest.raises(TypeError, match=r"conv2d: weight must be a floating-point tensor"):
        conv2d(x, md.tensor(np.zeros((6, 3, 3, 3), np.int32)))


def test_conv_transpose2d_errors():
    x = md.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"conv_transpose2d: input has 4 channels but weight "
                                         r"expects 2"):
        conv_transpose2d(x, md.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding \(2, 2\) must be "
                                         r"smaller than the stride \(2, 2\)"):
        conv_transpose2d(x, md.zeros(4, 3, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: input channels \(4\) and output channels "
                                         r"\(3\) must be divisible by groups \(3\)"):
        conv_transpose2d(x, md.zeros(4, 1, 3, 3), groups=3)
    with pytest.raises(ValueError, match=r"conv_transpose2d: stride must be a positive int or pair, "
                                         r"got \(1, 0\)"):
        conv_transpose2d(x, md.zeros(4, 1, 3, 3), stride=(1, 0))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding must be a "
                                         r"non-negative int or pair, got \(-1, -1\)"):
        conv_transpose2d(x, md.zeros(4, 1, 3, 3), output_padding=-1)
    with pytest.raises(TypeError, match=r"conv_transpose2d: bias must be a floating-point"):
        conv_transpose2d(x, md.zeros(4, 1, 3, 3), md.tensor(np.zeros(1, np.int64)))


@pytest.mark.torch
@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(padding="same", dilation=2),
                                dict(stride=(1, 2), padding=(2, 0), groups=2),
                                dict(padding="valid", groups=4)])
def test_conv2d_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    x, w, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((4, 4 // kw.get("groups", 1), 3, 2)), rng.standard_normal(4)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    mx, mw, mb = (md.tensor(a, requires_grad=True) for a in (x, w, b))
    my = conv2d(mx, mw, mb, **kw)
    np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), atol=1e-10)
    gy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(gy))
    my.backward(md.tensor(gy))
    for m, t in ((mx, tx), (mw, tw), (mb, tb)):
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), atol=1e-10)


@pytest.mark.torch
@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1),
                                dict(stride=(3, 2), padding=(0, 1), dilation=(2, 1), groups=2)])
def test_conv_transpose2d_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 4, 3, 4)), rng.standard_normal((4, 3, 3, 4)), rng.standard_normal(3 * kw.get("groups", 1))
    ty = torch.nn.functional.conv_transpose2d(*(torch.tensor(a) for a in (x, w, b)), **kw)
    np.testing.assert_allclose(conv_transpose2d(md.tensor(x), md.tensor(w), md.tensor(b), **kw).numpy(),
                               ty.numpy(), atol=1e-10)


@pytest.mark.parametrize("channels", [3, 6])      # few-channel and channels-last paths
def test_conv2d_empty_batch_gives_empty_output_and_zero_weight_grad(channels):
    x = md.tensor(np.zeros((0, channels, 8, 8)), requires_grad=True)
    w = md.tensor(np.ones((4, channels, 3, 3)), requires_grad=True)
    y = conv2d(x, w, None, 1, 1)
    assert y.shape == (0, 4, 8, 8)
    y.sum().backward()
    assert x.grad.shape == (0, channels, 8, 8)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((4, channels, 3, 3)))


# ---- the layers: nn.Conv2d and nn.ConvTranspose2d -----------------------------------

def test_conv_default_init_uses_receptive_field_fans():
    md.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    w = conv.weight.numpy()
    assert w.shape == (32, 16, 3, 3)
    assert uniform_bound(w) <= bound and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert uniform_bound(conv.bias.numpy()) <= bound
    grouped = nn.Conv2d(16, 32, 3, groups=4)
    assert grouped.weight.shape == (32, 4, 3, 3)
    assert uniform_bound(grouped.weight.numpy()) <= 1 / math.sqrt(4 * 9)
    tconv = nn.ConvTranspose2d(8, 6, 4, stride=2)
    assert tconv.weight.shape == (8, 6, 4, 4)
    # torch computes the fan of a transposed-conv weight from dim 1 as well
    assert uniform_bound(tconv.weight.numpy()) <= 1 / math.sqrt(6 * 16)


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


def test_conv_layers_check_their_arguments_when_built():
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size must be a positive int or pair, "
                                         r"got \(0, 0\)"):
        nn.Conv2d(3, 6, 0)
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size must be a positive int or pair, "
                                         r"got 2.5"):
        nn.Conv2d(3, 6, 2.5)
    with pytest.raises(ValueError, match=r"Conv2d: stride must be a positive int or pair, "
                                         r"got \(1, 2, 3\)"):
        nn.Conv2d(3, 6, 3, stride=(1, 2, 3))
    with pytest.raises(ValueError, match=r"Conv2d: padding must be a non-negative int or pair, "
                                         r"got \(-1, -1\)"):
        nn.Conv2d(3, 6, 3, padding=-1)
    with pytest.raises(ValueError, match=r"Conv2d: padding must be an int, a pair, 'same' or "
                                         r"'valid', got 'full'"):
        nn.Conv2d(3, 6, 3, padding="full")
    with pytest.raises(ValueError, match=r"Conv2d: padding='same' needs stride 1, got stride "
                                         r"\(2, 2\)"):
        nn.Conv2d(3, 6, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"Conv2d: in_channels must be a positive int, got 0"):
        nn.Conv2d(0, 6, 3)
    with pytest.raises(ValueError, match=r"Conv2d: groups must be a positive int, got 0"):
        nn.Conv2d(3, 6, 3, groups=0)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: in_channels \(4\) and out_channels "
                                         r"\(6\) must be divisible by groups \(4\)"):
        nn.ConvTranspose2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding must be a "
                                         r"non-negative int or pair, got \(-1, -1\)"):
        nn.ConvTranspose2d(4, 2, 3, output_padding=-1)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: dilation must be a positive int or "
                                         r"pair, got \(1, 0\)"):
        nn.ConvTranspose2d(4, 2, 3, dilation=(1, 0))


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


@pytest.mark.torch
@pytest.mark.parametrize("make", [
    lambda tnn: (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), tnn.Conv2d(4, 6, 3, 2, 1, groups=2),
     (2, 4, 7, 7)),
    lambda tnn: (nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), tnn.ConvTranspose2d(4, 2, 4, 2, 1),
     (2, 4, 5, 5)),
], ids=["conv2d", "conv_transpose2d"])
def test_conv_layers_match_torch(make):
    torch = pytest.importorskip("torch")
    assert_layer_matches_torch(*make(torch.nn))


# ---- conv_transpose2d with output_padding of a stride or more (below the dilation) ----------

@pytest.mark.parametrize("cin, cout, groups, k, stride, padding, output_padding, dilation", [
    (5, 2, 1, (2, 3), (1, 1), (1, 0), (1, 2), (2, 3)),    # stride 1, offset-major dx path
    (2, 3, 1, (3, 2), (1, 1), (0, 1), (2, 1), (3, 2)),    # stride 1, flipped-kernel path
    (3, 2, 1, (2, 2), (2, 2), (1, 0), (2, 1), (3, 2)),    # strided col2im path
    (4, 4, 2, (3, 2), (2, 1), (1, 1), (1, 2), (1, 3)),    # grouped, mixed
])
def test_conv_transpose2d_output_padding_below_dilation(device, cin, cout, groups, k, stride,
                                                        padding, output_padding, dilation):
    rng = np.random.default_rng(10)
    x, w, b = _tensors(device, rng, (2, cin, 3, 4), (cin, cout // groups, *k), (cout,))
    fn = lambda x, w, b: conv_transpose2d(x, w, b, stride, padding, output_padding,  # noqa: E731
                                          groups, dilation)
    y = fn(x, w, b)
    ref = naive_conv_transpose2d(x.numpy(), w.numpy(), b.numpy(), stride, padding,
                                 output_padding, groups, dilation)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    assert md.gradcheck(fn, x, w, b)
    assert md.gradgradcheck(fn, x, w, b)
    layer = nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding, groups,
                               dilation=dilation).double().to(device)
    assert layer(x).shape == ref.shape


def test_conv_transpose2d_output_padding_must_be_below_stride_or_dilation():
    x = md.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding \(3, 0\) must be "
                                         r"smaller than the stride \(1, 1\) or the dilation "
                                         r"\(3, 1\)"):
        conv_transpose2d(x, md.zeros(2, 1, 2, 2), output_padding=(3, 0), dilation=(3, 1))
