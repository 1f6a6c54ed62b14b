"""The CPU conv gradient kernels read a channels-last gy in place and copy any other
layout: both give the same bits, on every kernel path that reads gy."""
from __future__ import annotations

import numpy as np
import pytest

from minidl import kernels


def _channels_last(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("C, K, stride", [
    (8, 6, 1),      # grad input: flipped-kernel correlation; grad weight: im2col GEMM
    (3, 8, 1),      # few channels (weight), offset-major input gradient (K >= 2C)
    (8, 6, 2),      # strided: GEMM then col2im
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_kernels_same_bits_in_both_gy_layouts(C, K, stride, dtype):
    rng = np.random.default_rng(0)
    x = _channels_last(rng.standard_normal((5, C, 9, 9)).astype(dtype))
    w = rng.standard_normal((K, C, 3, 3)).astype(dtype)
    args = ((stride, stride), (1, 1, 1, 1), (1, 1), 1)
    Ho = kernels.out_size(9, 3, stride, 1, 1, 1)
    gy = rng.standard_normal((5, K, Ho, Ho)).astype(dtype)
    results = []
    for g in (gy, _channels_last(gy)):
        assert g.flags.c_contiguous == (g is gy)
        results.append((kernels.conv2d_grad_input(g, w, (9, 9), *args),
                        kernels.conv2d_grad_weight(x, g, (3, 3), *args)))
    for a, b in zip(*results):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    ref_gw = np.einsum("nkhw,nchwij->kcij", gy.astype(np.float64), np.stack(
        [np.stack([np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))[
            :, :, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Ho - 1) + 1:stride]
            for j in range(3)], -1) for i in range(3)], -2))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(results[0][1], ref_gw, rtol=tol, atol=tol)
