"""Max/avg/adaptive/global pooling: loop oracles, ties, gradchecks, double backward, errors;
the pooling layers: gradchecks and values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layer_checks import assert_layer_matches_torch, randn

import minidl as md
import minidl.nn as nn
from minidl.functional.pooling import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d


def fewer(n: int) -> settings:
    return settings(max_examples=n, suppress_health_check=[HealthCheck.function_scoped_fixture])


def out_len(size, k, s, p, ceil_mode):
    """torch's pooling output length, written out."""
    if ceil_mode:
        o = math.ceil((size + 2 * p - k) / s) + 1
        if (o - 1) * s >= size + p:
            o -= 1
        return o
    return (size + 2 * p - k) // s + 1


def naive_pool(x, k, s, p, ceil_mode, kind, count_include_pad=True):
    """Loop over output pixels; each window is clipped to the input by hand."""
    N, C, H, W = x.shape
    Ho, Wo = out_len(H, k[0], s[0], p[0], ceil_mode), out_len(W, k[1], s[1], p[1], ceil_mode)
    y = np.zeros((N, C, Ho, Wo))
    for ho in range(Ho):
        for wo in range(Wo):
            h0, w0 = ho * s[0] - p[0], wo * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])   # padded extent
            win = x[:, :, max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
            if kind == "max":
                y[:, :, ho, wo] = win.max(axis=(2, 3))
            else:
                count = (h1 - h0) * (w1 - w0) if count_include_pad else win.shape[2] * win.shape[3]
                y[:, :, ho, wo] = win.sum(axis=(2, 3)) / count
    return y


@st.composite
def pool_case(draw):
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    H = draw(st.integers(max(1, k[0] - 2 * p[0]), 9))
    W = draw(st.integers(max(1, k[1] - 2 * p[1]), 9))
    return draw(st.integers(1, 3)), draw(st.integers(1, 4)), H, W, k, s, p, draw(st.booleans())


def distinct(rng, shape):
    """Values without ties (so max pooling is differentiable everywhere we probe)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) / 10.0


@fewer(30)
@given(pool_case())
def test_max_pool2d_matches_loops_and_gradcheck(device, case):
    N, C, H, W, k, s, p, ceil_mode = case
    rng = np.random.default_rng(0)
    x = md.tensor(distinct(rng, (N, C, H, W)), device=device, requires_grad=True)
    y = max_pool2d(x, k, s, p, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(y.numpy(), naive_pool(x.numpy(), k, s, p, ceil_mode, "max"))
    assert md.gradcheck(lambda x: max_pool2d(x, k, s, p, ceil_mode=ceil_mode), x, eps=1e-3)


@fewer(30)
@given(pool_case(), st.booleans())
def test_avg_pool2d_matches_loops_and_gradcheck(device, case, count_include_pad):
    N, C, H, W, k, s, p, ceil_mode = case
    rng = np.random.default_rng(1)
    x = md.tensor(rng.standard_normal((N, C, H, W)), device=device, requires_grad=True)
    y = avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    ref = naive_pool(x.numpy(), k, s, p, ceil_mode, "avg", count_include_pad)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    assert md.gradcheck(lambda x: avg_pool2d(x, k, s, p, ceil_mode, count_include_pad), x)


def test_pooling_stride_defaults_to_kernel(device):
    x = md.tensor(np.arange(36.0).reshape(1, 1, 6, 6), device=device)
    assert max_pool2d(x, 2).shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(avg_pool2d(x, 3).numpy()[0, 0], [[7, 10], [25, 28]])


def test_max_pool2d_ties_go_to_first_maximum(device):
    # every window of this input is a tie; the gradient must go to the first (top-left) one
    x = md.tensor(np.ones((1, 1, 4, 4)), device=device, requires_grad=True)
    max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1, 0, 1, 0], [0, 0, 0, 0],
                                                         [1, 0, 1, 0], [0, 0, 0, 0]])
    # a tie between the 2nd and 4th element of one window: the 2nd wins
    x = md.tensor(np.array([[[[0.0, 5.0], [1.0, 5.0]]]]), device=device, requires_grad=True)
    max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[0, 1], [0, 0]])


def test_max_pool2d_overlapping_windows_accumulate(device):
    # 3x3 stride 2: the centre pixel is the max of all four windows, so it gets 4 gradients
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    xt = md.tensor(x, device=device, requires_grad=True)
    max_pool2d(xt, 3, 2).sum().backward()
    assert xt.grad.numpy()[0, 0, 2, 2] == 4.0 and xt.grad.numpy().sum() == 4.0


def test_pooling_gradgradcheck(device):
    rng = np.random.default_rng(2)
    x = md.tensor(distinct(rng, (2, 2, 5, 5)), device=device, requires_grad=True)
    assert md.gradgradcheck(lambda x: max_pool2d(x, 3, 2, 1, ceil_mode=True), x, eps=1e-3)
    assert md.gradgradcheck(lambda x: avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                 count_include_pad=False), x)
    assert md.gradgradcheck(lambda x: adaptive_avg_pool2d(x, (2, 3)), x)


def naive_adaptive(x, Ho, Wo):
    N, C, H, W = x.shape
    y = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            h0, h1 = (i * H) // Ho, math.ceil((i + 1) * H / Ho)
            w0, w1 = (j * W) // Wo, math.ceil((j + 1) * W / Wo)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("out", [1, 2, (3, 4), (5, 7), (None, 2)])
def test_adaptive_avg_pool2d(device, out):
    rng = np.random.default_rng(3)
    x = md.tensor(rng.standard_normal((2, 3, 6, 7)), device=device, requires_grad=True)
    y = adaptive_avg_pool2d(x, out)
    Ho, Wo = (out, out) if isinstance(out, int) else (out[0] or 6, out[1] or 7)
    np.testing.assert_allclose(y.numpy(), naive_adaptive(x.numpy(), Ho, Wo), atol=1e-12)
    assert md.gradcheck(lambda x: adaptive_avg_pool2d(x, out), x)


def test_global_avg_pool2d(device):
    rng = np.random.default_rng(4)
    x = md.tensor(rng.standard_normal((2, 3, 4, 5)), device=device, requires_grad=True)
    np.testing.assert_allclose(global_avg_pool2d(x).numpy(), x.numpy().mean(axis=(2, 3)))
    assert global_avg_pool2d(x, keepdims=True).shape == (2, 3, 1, 1)
    assert md.gradcheck(global_avg_pool2d, x)


def test_pooling_float32(device):
    x = md.randn(2, 3, 8, 8, device=device)
    assert max_pool2d(x, 2).dtype == np.float32
    assert avg_pool2d(x, 3, 1, 1).dtype == np.float32
    assert adaptive_avg_pool2d(x, 3).dtype == np.float32


def test_pooling_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: expected a 4-D input.*\(3, 8, 8\)"):
        max_pool2d(md.zeros(3, 8, 8), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size \(5, 5\) is larger than the "
                                         r"padded input \(4, 4\)"):
        max_pool2d(md.zeros(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match=r"avg_pool2d: stride must be a positive int or pair, got \(0, 0\)"):
        avg_pool2d(md.zeros(1, 1, 4, 4), 2, stride=0)
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half"):
        max_pool2d(md.zeros(1, 1, 8, 8), 3, padding=2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be a positive int or "
                                         r"pair, got \(0, 0\)"):
        adaptive_avg_pool2d(md.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected a 4-D input"):
        adaptive_avg_pool2d(md.zeros(4, 4), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: padding must be a non-negative int or "
                                         r"pair, got \(-1, 0\)"):
        max_pool2d(md.zeros(1, 1, 4, 4), 2, padding=(-1, 0))
    with pytest.raises(ValueError, match=r"avg_pool2d: kernel_size must be a positive int or "
                                         r"pair, got \(2, 2, 2\)"):
        avg_pool2d(md.zeros(1, 1, 4, 4), (2, 2, 2))
    with pytest.raises(TypeError, match=r"max_pool2d: input must be a floating-point tensor, "
                                        r"got dtype int64"):
        max_pool2d(md.tensor(np.zeros((1, 1, 4, 4), np.int64)), 2)
    with pytest.raises(TypeError, match=r"global_avg_pool2d: input must be a floating-point"):
        global_avg_pool2d(md.tensor(np.zeros((1, 1, 4, 4), np.int64)))


@pytest.mark.torch
@pytest.mark.parametrize("args", [(3, 2, 1, True), (2, None, 0, False), ((3, 2), (2, 3), (1, 1), True)])
def test_pooling_matches_torch(args):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    k, s, p, ceil_mode = args
    x = np.random.default_rng(12).standard_normal((2, 3, 9, 8))
    tx = torch.tensor(x)
    np.testing.assert_array_equal(max_pool2d(md.tensor(x), k, s, p, ceil_mode=ceil_mode).numpy(),
                                  F.max_pool2d(tx, k, s, p, ceil_mode=ceil_mode).numpy())
    for cip in (True, False):
        np.testing.assert_allclose(avg_pool2d(md.tensor(x), k, s, p, ceil_mode, cip).numpy(),
                                   F.avg_pool2d(tx, k, s, p, ceil_mode, cip).numpy(), atol=1e-12)
    np.testing.assert_allclose(adaptive_avg_pool2d(md.tensor(x), (4, 5)).numpy(),
                               F.adaptive_avg_pool2d(tx, (4, 5)).numpy(), atol=1e-12)


# ---- the layers: nn.MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d ------------

@pytest.mark.parametrize("layer", [
    lambda: nn.MaxPool2d(2),
    lambda: nn.MaxPool2d(3, stride=2, padding=1),
    lambda: nn.AvgPool2d(2),
    lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    lambda: nn.AdaptiveAvgPool2d((2, 3)),
    lambda: nn.GlobalAvgPool2d(),
], ids=["max", "max-pad", "avg", "avg-pad", "adaptive", "global"])
def test_pooling_layers_gradcheck(layer):
    m = layer()
    x = randn(2, 3, 4, 5, requires_grad=True)
    assert md.gradcheck(m, x)


def test_pooling_layers_check_their_arguments_when_built():
    with pytest.raises(ValueError, match=r"MaxPool2d: kernel_size must be a positive int or "
                                         r"pair, got \(0, 0\)"):
        nn.MaxPool2d(0)
    with pytest.raises(ValueError, match=r"AvgPool2d: stride must be a positive int or pair, "
                                         r"got \(2, 0\)"):
        nn.AvgPool2d(2, stride=(2, 0))
    with pytest.raises(ValueError, match=r"AvgPool2d: padding must be a non-negative int or "
                                         r"pair, got \(-1, -1\)"):
        nn.AvgPool2d(2, padding=-1)
    with pytest.raises(ValueError, match=r"GlobalAvgPool2d: expected a 4-D input \(N, C, H, W\), "
                                         r"got shape \(2, 3\)"):
        nn.GlobalAvgPool2d()(md.zeros(2, 3))
    assert nn.MaxPool2d(2, stride=()).stride == ()      # () means 'the kernel size', as in F


def test_pool_layer_values():
    x = md.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).numpy()[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(nn.AvgPool2d(2)(x).numpy()[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(nn.AdaptiveAvgPool2d(1)(x).numpy().ravel(), [7.5])
    np.testing.assert_array_equal(nn.GlobalAvgPool2d()(x).numpy(), [[7.5]])
    assert "kernel_size=2, stride=2" in repr(nn.MaxPool2d(2))


@pytest.mark.torch
@pytest.mark.parametrize("make", [
    lambda tnn: (nn.MaxPool2d(3, 2, 1, ceil_mode=True), tnn.MaxPool2d(3, 2, 1, ceil_mode=True),
     (1, 2, 7, 7)),
    lambda tnn: (nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     tnn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 2, 7, 7)),
    lambda tnn: (nn.AdaptiveAvgPool2d((3, 2)), tnn.AdaptiveAvgPool2d((3, 2)), (1, 2, 7, 5)),
], ids=["max", "avg", "adaptive"])
def test_pooling_layers_match_torch(make):
    torch = pytest.importorskip("torch")
    assert_layer_matches_torch(*make(torch.nn))


# ---- dilation, return_indices, divisor_override ---------------------------------------------

def naive_dilated_max(x, k, s, p, d, ceil_mode):
    """Loops over output pixels of the -inf padded input; taps d apart. Returns the maxima
    and torch's flat indices h*W + w of the first maximum of each window."""
    N, C, H, W = x.shape
    ext = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    Ho, Wo = out_len(H, ext[0], s[0], p[0], ceil_mode), out_len(W, ext[1], s[1], p[1], ceil_mode)
    big = np.full((N, C, H + 2 * p[0] + ext[0] + s[0], W + 2 * p[1] + ext[1] + s[1]), -np.inf)
    big[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    y, idx = np.zeros((N, C, Ho, Wo)), np.zeros((N, C, Ho, Wo), np.int64)
    for ho in range(Ho):
        for wo in range(Wo):
            h0, w0 = ho * s[0], wo * s[1]
            win = big[:, :, h0:h0 + ext[0]:d[0], w0:w0 + ext[1]:d[1]].reshape(N, C, -1)
            y[:, :, ho, wo] = win.max(axis=2)
            first = win.argmax(axis=2)                           # first maximum, row-major
            i, j = first // k[1], first % k[1]
            idx[:, :, ho, wo] = (h0 - p[0] + i * d[0]) * W + (w0 - p[1] + j * d[1])
    return y, idx


@st.composite
def dilated_case(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    ext = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    # every window keeps at least one real pixel (windows of padding only are an error)
    H = draw(st.integers(max(1, ext[0] - 2 * p[0], ext[0] - p[0]), 8))
    W = draw(st.integers(max(1, ext[1] - 2 * p[1], ext[1] - p[1]), 8))
    return draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W, k, s, p, d, draw(st.booleans())


@fewer(30)
@given(dilated_case())
def test_dilated_max_pool2d_matches_loops_gradcheck_and_indices(device, case):
    N, C, H, W, k, s, p, d, ceil_mode = case
    rng = np.random.default_rng(3)
    x = md.tensor(distinct(rng, (N, C, H, W)), device=device, requires_grad=True)
    y, idx = max_pool2d(x, k, s, p, d, ceil_mode=ceil_mode, return_indices=True)
    ref, ref_idx = naive_dilated_max(x.numpy(), k, s, p, d, ceil_mode)
    np.testing.assert_array_equal(y.numpy(), ref)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert idx.dtype == np.int64
    assert md.gradcheck(lambda x: max_pool2d(x, k, s, p, d, ceil_mode=ceil_mode), x, eps=1e-3)


def test_dilated_max_pool2d_gradgradcheck_and_ties(device):
    rng = np.random.default_rng(4)
    x = md.tensor(distinct(rng, (2, 2, 7, 7)), device=device, requires_grad=True)
    assert md.gradgradcheck(lambda x: max_pool2d(x, 3, 2, 1, dilation=2, ceil_mode=True), x,
                            eps=1e-3)
    # all equal: every window's first tap wins, and with dilation 2 that is its top-left
    ones = md.tensor(np.ones((1, 1, 5, 5)), device=device, requires_grad=True)
    y, idx = max_pool2d(ones, 2, stride=3, dilation=2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[0]])
    y.sum().backward()
    assert ones.grad.numpy()[0, 0, 0, 0] == 1.0 and ones.grad.numpy().sum() == 1.0


def test_max_pool2d_indices_without_dilation(device):
    x = np.array([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 9.0, 8.0], [7.0, 6.0, 0.5, 0.2],
                    [0.1, 0.3, 0.4, 0.6]]]])
    y, idx = max_pool2d(md.tensor(x, device=device), 2, return_indices=True)
    np.testing.assert_array_equal(y.numpy()[0, 0], [[5, 9], [7, 0.6]])
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[1, 6], [8, 15]])


@pytest.mark.parametrize("divisor", [1, 3, 7])
def test_avg_pool2d_divisor_override(device, divisor):
    rng = np.random.default_rng(5)
    x = md.tensor(rng.standard_normal((2, 3, 5, 6)), device=device, requires_grad=True)
    y = avg_pool2d(x, 3, 2, 1, ceil_mode=True, divisor_override=divisor)
    # window sums by a loop over the zero-padded input (the ceil_mode overhang is zeros too)
    assert y.shape == (2, 3, 3, 4)
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 3), (1, 3)))
    ref = np.zeros(y.shape)
    for ho in range(y.shape[2]):
        for wo in range(y.shape[3]):
            ref[:, :, ho, wo] = xp[:, :, 2 * ho:2 * ho + 3, 2 * wo:2 * wo + 3].sum(axis=(2, 3))
    np.testing.assert_allclose(y.numpy(), ref / divisor, rtol=1e-12)
    assert md.gradcheck(lambda x: avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                             divisor_override=divisor), x)
    assert md.gradgradcheck(lambda x: avg_pool2d(x, 2, divisor_override=divisor), x)


def test_pooling_torch_argument_order_and_new_errors(device):
    x = md.zeros(1, 1, 6, 6, device=device)
    with pytest.raises(TypeError, match=r"max_pool2d: dilation=True: torch's order.*"
                                        r"pass ceil_mode=True by keyword"):
        max_pool2d(x, 3, 2, 1, True)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size \(3, 3\) \(extent \(7, 7\) "
                                         r"with dilation \(3, 3\)\) is larger than the padded"):
        max_pool2d(x, 3, dilation=3)
    with pytest.raises(ValueError, match="max_pool2d: dilation"):
        max_pool2d(x, 3, dilation=0)
    # rows -1 and 3 of a 3-row input: the first window holds padding only
    with pytest.raises(ValueError, match=r"max_pool2d: with dilation \(4, 1\) and padding "
                                         r"\(1, 0\) some windows see only padding"):
        max_pool2d(md.zeros(1, 1, 3, 3, device=device), (2, 1), padding=(1, 0), dilation=(4, 1))
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override must be a non-zero int"):
        avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="MaxPool2d: dilation=True: torch's order"):
        nn.MaxPool2d(3, 2, 1, True)
    with pytest.raises(ValueError, match="MaxPool2d: dilation"):
        nn.MaxPool2d(3, dilation=(1, 0))


def test_pooling_layers_take_dilation_indices_and_divisor(device):
    rng = np.random.default_rng(6)
    x = md.tensor(distinct(rng, (2, 2, 7, 7)), device=device)
    layer = nn.MaxPool2d(3, 2, 1, 2, True, True)               # torch's positional order
    y, idx = layer(x)
    ref, ref_idx = naive_dilated_max(x.numpy(), (3, 3), (2, 2), (1, 1), (2, 2), True)
    np.testing.assert_array_equal(y.numpy(), ref)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert repr(nn.MaxPool2d(3, dilation=2)) == \
        "MaxPool2d(kernel_size=3, stride=3, padding=0, dilation=2)"
    np.testing.assert_allclose(nn.AvgPool2d(7, divisor_override=1)(x).numpy()[:, :, 0, 0],
                               x.numpy().sum(axis=(2, 3)), rtol=1e-12)
