"""1x1 convolutions (no padding, one group) as plain GEMMs: the three kernels against the
reference conv and its adjoints on every device and memory layout, strided too, that no
im2col runs on the CPU, and float64 gradchecks of F.conv2d through that path."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import kernels
from minidl.backend import to_numpy
from minidl.kernels import _numpy, reference

ARGS = ((1, 1), (0, 0, 0, 0), (1, 1), 1)      # stride, pads, dilation, groups


def _layouts(xp, a):
    """a as NCHW-contiguous and as channels-last (the layout of conv outputs on the CPU)."""
    cl = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return [xp.asarray(a), xp.asarray(cl) if xp is np else xp.asarray(a)]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(3, 5, 4, 6, 7), (1, 1, 1, 1, 1), (5, 16, 8, 8, 32)])
def test_pointwise_kernels_match_reference_and_adjoints(xp, dtype, tol, shape):
    N, C, H, W, K = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, 1, 1)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    gy = rng.standard_normal((N, K, H, W)).astype(dtype)
    x64, w64, gy64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    ref = reference.conv2d(x64, w64, b.astype(np.float64), *ARGS)
    # adjoints, from the definition: dx = sum_k gy[k] w[k, c], dw = sum over pixels gy x
    ref_dx = np.einsum("nkhw,kc->nchw", gy64, w64[:, :, 0, 0])
    ref_dw = np.einsum("nkhw,nchw->kc", gy64, x64)[:, :, None, None]
    scale = max(1.0, np.sqrt(N * H * W))
    for xa in _layouts(xp, x):
        y = kernels.conv2d_forward(xa, xp.asarray(w), xp.asarray(b), *ARGS)
        assert y.dtype == dtype and y.shape == (N, K, H, W)
        np.testing.assert_allclose(to_numpy(y), ref, rtol=tol, atol=tol * np.sqrt(C))
        dw = kernels.conv2d_grad_weight(xa, xp.asarray(gy), (1, 1), *ARGS)
        assert dw.dtype == dtype and dw.shape == w.shape
        np.testing.assert_allclose(to_numpy(dw), ref_dw, rtol=tol, atol=tol * scale)
    for ga in _layouts(xp, gy):
        dx = kernels.conv2d_grad_input(ga, xp.asarray(w), (H, W), *ARGS)
        assert dx.dtype == dtype and dx.shape == x.shape
        np.testing.assert_allclose(to_numpy(dx), ref_dx, rtol=tol, atol=tol * np.sqrt(K))


@pytest.mark.parametrize("stride, in_hw", [((2, 2), (7, 8)), ((1, 3), (5, 7)), ((2, 2), (8, 8))])
def test_strided_pointwise_kernels_match_reference(xp, stride, in_hw):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5) + in_hw)
    w = rng.standard_normal((6, 5, 1, 1))
    args = (stride, (0, 0, 0, 0), (1, 1), 1)
    ref = reference.conv2d(x, w, None, *args)
    gy = rng.standard_normal(ref.shape)
    sub = x[:, :, ::stride[0], ::stride[1]]
    ref_dx = np.zeros_like(x)
    ref_dx[:, :, ::stride[0], ::stride[1]] = np.einsum("nkhw,kc->nchw", gy, w[:, :, 0, 0])
    ref_dw = np.einsum("nkhw,nchw->kc", gy, sub)[:, :, None, None]
    for xa in _layouts(xp, x):
        y = kernels.conv2d_forward(xa, xp.asarray(w), None, *args)
        np.testing.assert_allclose(to_numpy(y), ref, rtol=1e-12, atol=1e-12)
        dw = kernels.conv2d_grad_weight(xa, xp.asarray(gy), (1, 1), *args)
        np.testing.assert_allclose(to_numpy(dw), ref_dw, rtol=1e-12, atol=1e-11)
    for ga in _layouts(xp, gy):
        dx = kernels.conv2d_grad_input(ga, xp.asarray(w), in_hw, *args)
        np.testing.assert_allclose(to_numpy(dx), ref_dx, rtol=1e-12, atol=1e-12)
    # a transposed conv's output_padding asks for an input gradient one row larger
    big = (in_hw[0] + 1, in_hw[1])
    if kernels.out_size(big[0], 1, stride[0], 0, 0, 1) == ref.shape[2]:
        dx = to_numpy(kernels.conv2d_grad_input(xp.asarray(gy), xp.asarray(w), big, *args))
        np.testing.assert_allclose(dx[:, :, :in_hw[0]], ref_dx, rtol=1e-12, atol=1e-12)
        assert not dx[:, :, in_hw[0]:].any()


def test_pointwise_path_runs_no_im2col(monkeypatch):
    def no_im2col(*args, **kw):
        raise AssertionError("im2col ran for a 1x1 conv")

    for name in ("_windows", "_offset_major", "_conv_nhwc"):
        monkeypatch.setattr(_numpy, name, no_im2col)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((6, 4, 1, 1))
    y = kernels.conv2d_forward(x, w, None, *ARGS)
    kernels.conv2d_grad_input(y, w, (3, 3), *ARGS)
    kernels.conv2d_grad_weight(x, y, (1, 1), *ARGS)
    strided = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
    y = kernels.conv2d_forward(x, w, None, *strided)
    kernels.conv2d_grad_input(y, w, (3, 3), *strided)
    kernels.conv2d_grad_weight(x, y, (1, 1), *strided)
    # a padded 1x1 conv is not a plain GEMM: it still takes the im2col path
    with pytest.raises(AssertionError, match="im2col ran"):
        kernels.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)


def test_pointwise_blocks_and_threads_give_the_same_bits(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 8, 5, 5)).astype(np.float32)
    w = rng.standard_normal((12, 8, 1, 1)).astype(np.float32)
    gy = rng.standard_normal((9, 12, 5, 5)).astype(np.float32)

    def run():
        return [kernels.conv2d_forward(x, w, None, *ARGS),
                kernels.conv2d_grad_input(gy, w, (5, 5), *ARGS)]

    whole = run()
    monkeypatch.setattr(_numpy, "BLOCK_BYTES", 5 * 5 * 12 * 4 * 2)   # two images per block
    for a, b in zip(whole, run()):
        np.testing.assert_array_equal(a, b)
    dw = kernels.conv2d_grad_weight(x, gy, (1, 1), *ARGS)
    ref = np.einsum("nkhw,nchw->kc", gy.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(dw[:, :, 0, 0], ref, rtol=1e-5, atol=1e-4)


def test_conv2d_1x1_gradcheck(device):
    rng = np.random.default_rng(3)
    x = md.tensor(rng.standard_normal((2, 3, 4, 5)), device=device, requires_grad=True)
    w = md.tensor(rng.standard_normal((4, 3, 1, 1)), device=device, requires_grad=True)
    b = md.tensor(rng.standard_normal(4), device=device, requires_grad=True)
    assert md.gradcheck(F.conv2d, x, w, b)
    assert md.gradgradcheck(F.conv2d, x, w, b)
    # conv_transpose2d with a 1x1 kernel runs the same kernels the other way round
    wt = md.tensor(rng.standard_normal((3, 2, 1, 1)), device=device, requires_grad=True)
    assert md.gradcheck(F.conv_transpose2d, x, wt)
    assert md.gradcheck(lambda x, w: F.conv2d(x, w, stride=2), x, w)
    assert md.gradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=1),
                        x, wt)
