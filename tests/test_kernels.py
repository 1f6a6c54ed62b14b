"""Raw kernels (minidl.kernels) against the reference (minidl/kernels/reference.py) and a loop
pooling oracle, on every device; the reference against its definition; the CuPy kernel table
against its call sites."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minidl import kernels
from minidl.backend import to_numpy
from minidl.kernels import _cupy, reference

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def geometry(draw):
    """Batch, channels, size, kernel, stride, dilation and asymmetric padding that fit."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    H = draw(st.integers(max(1, d[0] * (kh - 1) + 1 - pads[0] - pads[1]), 9))
    W = draw(st.integers(max(1, d[1] * (kw - 1) + 1 - pads[2] - pads[3]), 9))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return N, C, H, W, (kh, kw), s, pads, d


@FIXTURE_OK
@given(geometry())
def test_im2col_col2im_match_reference(xp, g):
    N, C, H, W, (kh, kw), s, pads, d = g
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    cols = kernels.im2col(xp.asarray(x), (kh, kw), s, pads, d)
    expected = reference.im2col(x, (kh, kw), s, pads, d)
    np.testing.assert_array_equal(to_numpy(cols), expected)
    c = np.random.default_rng(1).standard_normal(expected.shape)
    back = kernels.col2im(xp.asarray(c), (H, W), s, pads, d)
    np.testing.assert_allclose(to_numpy(back), reference.col2im(c, (H, W), s, pads, d), atol=1e-12)


def test_reference_conv2d_follows_its_definition():
    """y[n, k, ho, wo] = b[k] + sum_{c,i,j} w[k, c, i, j] * x_pad[n, g*Cg + c, ho*sh + i*dh, wo*sw + j*dw]."""
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((6, 2, 2, 3)), rng.standard_normal(6)
    (sh, sw), (dh, dw), pads, groups = (2, 1), (1, 2), (1, 0, 2, 1), 2
    y = reference.conv2d(x, w, b, (sh, sw), pads, (dh, dw), groups)
    assert y.shape == (2, 6, 3, 5)      # Ho = (5 + 1 - 1 - 1) // 2 + 1, Wo = (6 + 3 - 4 - 1) + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1)))
    for n, k, ho, wo in np.ndindex(*y.shape):
        g = k // 3
        total = b[k] + sum(w[k, c, i, j] * x_pad[n, g * 2 + c, ho * sh + i * dh, wo * sw + j * dw]
                           for c in range(2) for i in range(2) for j in range(3))
        assert y[n, k, ho, wo] == pytest.approx(total, abs=1e-12)


@FIXTURE_OK
@given(geometry())
def test_reference_col2im_is_the_adjoint_of_im2col(g):
    """<im2col(x), c> = <x, col2im(c)> for any x and c: col2im sends every entry back."""
    N, C, H, W, k, s, pads, d = g
    rng = np.random.default_rng(9)
    x = rng.standard_normal((N, C, H, W))
    cols = reference.im2col(x, k, s, pads, d)
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose((cols * c).sum(), (x * reference.col2im(c, (H, W), s, pads, d)).sum(),
                               rtol=1e-12, atol=1e-12)
    assert reference.output_hw((H, W), k, s, pads, d) == cols.shape[1:3]


def test_im2col_small_picture():
    """The 2x2 / stride 2 picture of docs/convolution.md, spelled out."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    cols = kernels.im2col(x, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)).reshape(4, 4)
    np.testing.assert_array_equal(cols, [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13],
                                         [10, 11, 14, 15]])


@FIXTURE_OK
@given(geometry(), st.integers(1, 3), st.integers(1, 3))
def test_conv_kernels_are_im2col_gemm_and_adjoints(xp, g, groups, kg):
    """Forward = grouped GEMM of the reference im2col; grad_input/grad_weight are its adjoints."""
    N, C, H, W, (kh, kw), s, pads, d = g
    rng = np.random.default_rng(2)
    cg, K = C, groups * kg
    x = rng.standard_normal((N, cg * groups, H, W))
    w = rng.standard_normal((K, cg, kh, kw))
    y = to_numpy(kernels.conv2d_forward(xp.asarray(x), xp.asarray(w), None, s, pads, d, groups))
    cols = reference.im2col(x, (kh, kw), s, pads, d)      # (N, Ho, Wo, kh, kw, C)
    Ho, Wo = cols.shape[1:3]
    ref = np.zeros((N, K, Ho, Wo))
    for gi in range(groups):
        cg_cols = cols[..., gi * cg:(gi + 1) * cg].reshape(N, Ho, Wo, -1)
        wg = w[gi * kg:(gi + 1) * kg].transpose(0, 2, 3, 1).reshape(kg, -1)
        ref[:, gi * kg:(gi + 1) * kg] = (cg_cols @ wg.T).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, ref, atol=1e-10)
    gy = rng.standard_normal(y.shape)
    gx = to_numpy(kernels.conv2d_grad_input(xp.asarray(gy), xp.asarray(w), (H, W), s, pads, d,
                                            groups))
    gw = to_numpy(kernels.conv2d_grad_weight(xp.asarray(x), xp.asarray(gy), (kh, kw), s, pads,
                                             d, groups))
    x2, w2 = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    y_x2 = to_numpy(kernels.conv2d_forward(xp.asarray(x2), xp.asarray(w), None, s, pads, d,
                                           groups))
    y_w2 = to_numpy(kernels.conv2d_forward(xp.asarray(x), xp.asarray(w2), None, s, pads, d,
                                           groups))
    # <conv(x2, w), gy> = <x2, gx> and <conv(x, w2), gy> = <w2, gw> for arbitrary x2, w2
    np.testing.assert_allclose((y_x2 * gy).sum(), (x2 * gx).sum(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose((y_w2 * gy).sum(), (w2 * gw).sum(), rtol=1e-10, atol=1e-10)


def test_conv_kernel_float32_and_layouts(xp):
    """float32 in, float32 out; NCHW-contiguous and channels-last inputs give equal results."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 7, 7)).astype(np.float32)
    w = rng.standard_normal((5, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    y1 = kernels.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), *args)
    x_cl = xp.asarray(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    y2 = kernels.conv2d_forward(x_cl, xp.asarray(w), xp.asarray(b), *args)
    assert y1.dtype == np.float32 and y1.shape == (4, 5, 7, 7)
    ref = kernels.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                 b.astype(np.float64), *args)
    np.testing.assert_allclose(to_numpy(y1), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(to_numpy(y1), to_numpy(y2))


def test_conv_kernel_blocks_cover_the_batch(monkeypatch):
    """Cache blocking (several batch blocks, last one partial) changes nothing."""
    from minidl.kernels import _numpy

    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((7, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))
    gy = rng.standard_normal((7, 4, 3, 4))
    args = ((2, 1), (1, 1, 0, 1), (1, 1), 1)
    full = [_numpy.conv2d_forward(x, w, None, *args),
            _numpy.conv2d_grad_input(gy, w, (6, 5), *args),
            _numpy.conv2d_grad_weight(x, gy, (3, 2), *args)]
    monkeypatch.setattr(_numpy, "BLOCK_BYTES", 1)   # one image per block
    blocked = [_numpy.conv2d_forward(x, w, None, *args),
               _numpy.conv2d_grad_input(gy, w, (6, 5), *args),
               _numpy.conv2d_grad_weight(x, gy, (3, 2), *args)]
    for a, b in zip(full, blocked):
        np.testing.assert_allclose(a, b, atol=1e-12)


def naive_pool(x, k, s, pads, reduce):
    """reduce() over each window of the padded input, padding = NaN (ignored by reduce)."""
    N, C, H, W = x.shape
    pt, pb, pl, pr = pads
    xp = np.full((N, C, H + pt + pb, W + pl + pr), np.nan)
    xp[:, :, pt:pt + H, pl:pl + W] = x
    Ho = (H + pt + pb - k[0]) // s[0] + 1
    Wo = (W + pl + pr - k[1]) // s[1] + 1
    out = np.zeros((N, C, Ho, Wo))
    for ho in range(Ho):
        for wo in range(Wo):
            win = xp[:, :, ho * s[0]:ho * s[0] + k[0], wo * s[1]:wo * s[1] + k[1]]
            out[:, :, ho, wo] = reduce(win.reshape(N, C, -1))
    return out


@st.composite
def pool_geometry(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[0] // 2)),
            draw(st.integers(0, k[1] // 2)), draw(st.integers(0, k[1] // 2)))
    H = draw(st.integers(max(1, k[0] - pads[0] - pads[1]), 9))
    W = draw(st.integers(max(1, k[1] - pads[2] - pads[3]), 9))
    return draw(st.integers(1, 3)), draw(st.integers(1, 4)), H, W, k, s, pads


@FIXTURE_OK
@given(pool_geometry())
def test_pool_kernels_match_loops(xp, g):
    N, C, H, W, k, s, pads = g
    x = np.random.default_rng(5).permutation(N * C * H * W).reshape(N, C, H, W) / 7.0
    Ho = (H + pads[0] + pads[1] - k[0]) // s[0] + 1
    Wo = (W + pads[2] + pads[3] - k[1]) // s[1] + 1
    y, idx = kernels.max_pool2d_forward(xp.asarray(x), k, s, pads, (Ho, Wo))
    np.testing.assert_array_equal(to_numpy(y),
                                  naive_pool(x, k, s, pads, lambda v: np.nanmax(v, -1)))
    # max backward puts gy at the argmax; gather reads it back: adjoint pair
    rng = np.random.default_rng(6)
    gy, x2 = rng.standard_normal((N, C, Ho, Wo)), rng.standard_normal(x.shape)
    gx = to_numpy(kernels.max_pool2d_backward(xp.asarray(gy), idx, (H, W), k, s, pads))
    picked = to_numpy(kernels.max_pool2d_gather(xp.asarray(x), idx, k, s, pads))
    np.testing.assert_array_equal(picked, to_numpy(y))
    picked2 = to_numpy(kernels.max_pool2d_gather(xp.asarray(x2), idx, k, s, pads))
    np.testing.assert_allclose((picked2 * gy).sum(), (x2 * gx).sum(), rtol=1e-12)
    # average with a divisor that counts the padding
    inv = np.full((Ho, Wo), 1.0 / (k[0] * k[1]))
    ya = kernels.avg_pool2d_forward(xp.asarray(x), k, s, pads, (Ho, Wo), xp.asarray(inv))
    ref = naive_pool(x, k, s, pads, lambda v: np.nansum(v, -1)) / (k[0] * k[1])
    np.testing.assert_allclose(to_numpy(ya), ref, atol=1e-12)
    ga = to_numpy(kernels.avg_pool2d_backward(xp.asarray(gy), (H, W), k, s, pads,
                                              xp.asarray(inv)))
    ya2 = to_numpy(kernels.avg_pool2d_forward(xp.asarray(x2), k, s, pads, (Ho, Wo),
                                              xp.asarray(inv)))
    np.testing.assert_allclose((ya2 * gy).sum(), (x2 * ga).sum(), rtol=1e-10, atol=1e-12)


def test_max_pool_kernel_ties_go_to_first(xp):
    x = np.zeros((1, 1, 2, 2))
    y, idx = kernels.max_pool2d_forward(xp.asarray(x), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1))
    gx = kernels.max_pool2d_backward(xp.ones((1, 1, 1, 1)), idx, (2, 2), (2, 2), (2, 2),
                                     (0, 0, 0, 0))
    np.testing.assert_array_equal(to_numpy(gx)[0, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("fn", ["im2col", "conv2d_forward", "max_pool2d_forward"])
def test_dispatch_picks_numpy_for_numpy(fn):
    assert kernels.implementation(np.zeros(1)).__name__.endswith("_numpy")
    assert hasattr(kernels.implementation(np.zeros(1)), fn)


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 1, 0, 1)])
def test_pool_kernels_same_result_in_both_memory_layouts(xp, pads):
    rng = np.random.default_rng(7)
    x = rng.permutation(2 * 5 * 6 * 7).reshape(2, 5, 6, 7).astype(np.float64)
    x_cl = xp.asarray(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    k, s = (3, 2), (2, 2)
    Ho, Wo = (6 + pads[0] + pads[1] - 3) // 2 + 1, (7 + pads[2] + pads[3] - 2) // 2 + 1
    gy = rng.standard_normal((2, 5, Ho, Wo))
    gy_cl = xp.asarray(np.ascontiguousarray(gy.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    inv = xp.asarray(rng.random((Ho, Wo)))
    results = []
    for xx, gg in ((xp.asarray(x), xp.asarray(gy)), (x_cl, gy_cl)):
        y, idx = kernels.max_pool2d_forward(xx, k, s, pads, (Ho, Wo))
        results.append([y, kernels.max_pool2d_backward(gg, idx, (6, 7), k, s, pads),
                        kernels.max_pool2d_gather(xx, idx, k, s, pads),
                        kernels.avg_pool2d_forward(xx, k, s, pads, (Ho, Wo), inv),
                        kernels.avg_pool2d_backward(gg, (6, 7), k, s, pads, inv)])
    for a, b in zip(*results):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-12)


# ---- the CuPy kernel table, read without a GPU ------------------------------------------
# CuPy reads each parameter of an ElementwiseKernel as "[raw] TYPE NAME", TYPE a one-letter
# placeholder or a NumPy dtype name; "i" is its loop index, and each non-raw parameter is
# one element of its array. These tests catch a table entry and its call sites drifting
# apart on a machine that cannot compile the kernels.

C_WORDS = {"const", "int", "ptrdiff_t", "for", "if", "continue"}


def _cupy_source_calls():
    """(kernel name, number of arguments) of every ``_k("name")(...)`` call in _cupy.py."""
    n_pool = len(_cupy._pool_args((1, 1), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)))
    calls = []
    for node in ast.walk(ast.parse(Path(_cupy.__file__).read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Call)
                and isinstance(node.func.func, ast.Name) and node.func.func.id == "_k"):
            n = 0
            for a in node.args:
                if not isinstance(a, ast.Starred):
                    n += 1
                elif isinstance(a.value, ast.Call) and getattr(a.value.func, "id", "") == "_pool_args":
                    n += n_pool
                else:
                    pytest.fail(f"cannot count the arguments of {ast.unparse(node)}")
            calls.append((node.func.args[0].value, n))
    return calls


def _cupy_params(params: str) -> list[tuple[bool, str, str]]:
    """(raw, type, name) of each parameter, refusing what CuPy's parser refuses."""
    out = []
    for p in params.split(","):
        *mods, typ, name = p.split()
        assert set(mods) <= {"raw"}, f"unknown keyword in {p!r}"
        assert len(typ) == 1 or np.dtype(typ).name == typ, f"unknown type in {p!r}"
        assert name.isidentifier() and name != "i", f"bad parameter name in {p!r}"
        out.append(("raw" in mods, typ, name))
    return out


def test_every_cupy_kernel_called_is_in_the_table_and_every_entry_is_called():
    called = {name for name, _ in _cupy_source_calls()}
    assert called == set(_cupy._KERNELS)


@pytest.mark.parametrize("name", sorted(_cupy._KERNELS))
def test_cupy_kernel_spec_declares_what_its_body_uses(name):
    spec = _cupy._KERNELS[name]
    assert re.fullmatch(r"minidl_[a-z0-9_]+", spec.name)
    ins, outs = _cupy_params(spec.in_params), _cupy_params(spec.out_params)
    names = [p[2] for p in ins + outs]
    assert len(set(names)) == len(names), f"{name}: a parameter is declared twice"
    assert not any(raw for raw, _, _ in outs), f"{name}: outputs are one element per thread"
    body = re.sub(r"//[^\n]*", "", spec.operation)
    for _, _, out in outs:
        assert re.search(rf"\b{out}\s*=(?!=)", body), f"{name}: output {out} is never written"
    types = {t for _, t, _ in ins + outs if len(t) == 1}
    local = set(re.findall(r"\b(?:int|ptrdiff_t|T)\s+(\w+)\s*=", body))
    used = set(re.findall(r"\b[A-Za-z_]\w*", body)) - C_WORDS - types - local - {"i"}
    assert used <= set(names), f"{name}: body uses undeclared {sorted(used - set(names))}"
    assert set(names) <= used, f"{name}: parameters never used {sorted(set(names) - used)}"


def test_cupy_kernel_call_sites_pass_every_parameter():
    """Each call passes the inputs and the preallocated outputs, as many as the spec declares."""
    for name, n in _cupy_source_calls():
        spec = _cupy._KERNELS[name]
        declared = len(_cupy_params(spec.in_params)) + len(_cupy_params(spec.out_params))
        assert n == declared, f"_k({name!r}) is called with {n} arguments, declares {declared}"
