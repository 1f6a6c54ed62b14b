"""Element-wise ops in blocks on the worker threads (minidl.parallel.elementwise and its users:
ReLU, Tanh, Sigmoid, AddReLU, Add/Sub/Mul/Div, and the avg-pool kernels): with blocks forced
small, so that arrays of a few hundred numbers are cut into several blocks whose boundaries
are no multiple of the SIMD width, every result has the bits of the whole-array NumPy
expression, for C-contiguous and channels-last inputs, float32 and float64, and 1, 2 and 3
threads; inputs of mixed layouts are cut along axis 0 instead, or run in one whole-array call.
"""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import parallel
from minidl.functional.fused import add_relu
from minidl.kernels import _numpy as kernels

SHAPE = (3, 5, 7, 6)            # 630 elements: 18 blocks of 37 float32 (or 35 of 18 float64)
DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "channels_last"]


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """``a`` (N, C, H, W) stored C-contiguous or channels-last (NHWC)."""
    if layout == "c":
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _data(seed: int, dtype, layout: str, shape=SHAPE) -> np.ndarray:
    """Normal numbers with exact zeros, negative zeros and values near +-0 sprinkled in."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 3
    flat = a.reshape(-1)
    flat[::11] = 0.0
    flat[5::13] = -0.0
    flat[7::17] = 1e-30
    return _layout(a.astype(dtype), layout)


def _bits(a: np.ndarray) -> tuple:
    """What must agree: dtype, shape and every bit in logical order (-0.0 is not 0.0)."""
    return a.dtype, a.shape, np.asarray(a).tobytes()


def _channels_last(a: np.ndarray) -> bool:
    return a.strides[1] < a.strides[3]


@pytest.fixture
def spy(monkeypatch):
    """Small blocks and thresholds; returns the (blocks, threads) of every map_blocks call
    that parallel.elementwise made."""
    monkeypatch.setattr(parallel, "ELEMENTWISE_MIN_BYTES", 64)
    monkeypatch.setattr(parallel, "ELEMENTWISE_BLOCK_BYTES", 148)   # 37 float32, 18 float64
    monkeypatch.setattr(parallel, "ELEMENTWISE_ROW_BYTES", 148)     # one row per block
    calls = []
    original = parallel.map_blocks

    def counted(count, fn, threads, *rest):
        calls.append((count, threads))
        return original(count, fn, threads, *rest)
    monkeypatch.setattr(parallel, "map_blocks", counted)
    return calls


def _run(threads, spy, compute, blocks_on_one_thread=True):
    """``compute()`` at 1, 2 and 3 threads, checking that it ran in several blocks (on one
    thread too, unless told otherwise: one ufunc runs whole there); the results (one
    value, as they must agree)."""
    results = []
    for n in (1, 2, 3):
        threads(n)
        spy.clear()
        results.append(compute())
        if n == 1 and not blocks_on_one_thread:
            assert not spy
        else:
            assert spy and all(count > 1 and t == n for count, t in spy), spy
    for other in results[1:]:
        assert [_bits(a) for a in other] == [_bits(a) for a in results[0]]
    return results[0]


# --- the helper itself -------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_matches_whole_array_and_keeps_layout(threads, spy, layout, dtype):
    x, z = _data(0, dtype, layout), _data(1, dtype, layout)

    def fn(x, z, y, mask):
        t = np.multiply(x, x)
        np.subtract(1, t, out=t)
        np.multiply(z, t, out=y)
        np.greater(x, 0, out=mask)

    def compute():
        return parallel.elementwise(fn, (dtype, bool), x, z)
    y, mask = _run(threads, spy, compute)
    assert _bits(y) == _bits(z * (1 - x * x)) and _bits(mask) == _bits(x > 0)
    for out in (y, mask):
        assert _channels_last(out) == (layout == "channels_last") and out.base is None


def test_elementwise_blocks_depend_on_the_shape_only(threads, monkeypatch):
    monkeypatch.setattr(parallel, "ELEMENTWISE_MIN_BYTES", 64)
    monkeypatch.setattr(parallel, "ELEMENTWISE_BLOCK_BYTES", 148)
    x = _data(0, np.float32, "channels_last")
    for n in (1, 3):
        threads(n)
        seen = []
        parallel.elementwise(lambda x, y: seen.append(x.size) or np.copyto(y, x),
                             (np.float32,), x)
        assert sorted(seen) == sorted([37] * 17 + [630 - 17 * 37])


def _fortran(a: np.ndarray) -> np.ndarray:
    """``a`` stored with axis 0 fastest (no cut along axis 0 or in memory order fits it)."""
    return np.asfortranarray(a)


MIXED = {"c": lambda: _data(1, np.float64, "c"),
         "sliced": lambda: _data(1, np.float64, "c", (3, 5, 7, 12))[..., ::2],
         "broadcast": lambda: np.broadcast_to(_data(1, np.float64, "c", (1, 5, 7, 6)), SHAPE)}


@pytest.mark.parametrize("second", list(MIXED))
def test_elementwise_mixed_layouts_run_in_blocks_of_rows(threads, spy, second):
    """A channels-last array with an NCHW one, a gapped view or a broadcast: blocks along
    axis 0 (one 1680-byte row each here), the same bits for every thread count."""
    x, z = _data(0, np.float64, "channels_last"), MIXED[second]()
    seen = []

    def fn(x, z, y):
        seen.append(x.shape)
        np.multiply(x, z, out=y)
        np.subtract(y, x, out=y)

    def compute():
        seen.clear()
        return parallel.elementwise(fn, (np.float64,), x, z)
    y, = _run(threads, spy, compute)
    assert sorted(seen) == [(1, 5, 7, 6)] * 3
    assert _bits(y) == _bits(x * z - x) and y.strides == (x * z).strides  # NumPy's layout


def test_elementwise_layouts_without_a_cut_fall_back_to_one_call(spy):
    x = _data(0, np.float64, "channels_last")
    z = _fortran(_data(1, np.float64, "c"))
    seen = []

    def fn(x, z, y):
        seen.append(x.shape)
        np.add(x, z, out=y)
    y, = parallel.elementwise(fn, (np.float64,), x, z)
    assert seen == [SHAPE] and not spy
    assert _bits(y) == _bits(x + z)


def test_elementwise_small_arrays_run_in_one_call(monkeypatch):
    calls = []
    monkeypatch.setattr(parallel, "map_blocks", lambda *a: calls.append(a))
    x = _data(0, np.float32, "c")            # 2.5 KB, under the 2 MiB threshold
    y, = parallel.elementwise(np.tanh, (np.float32,), x)
    assert not calls and _bits(y) == _bits(np.tanh(x))
    large = np.zeros(parallel.ELEMENTWISE_MIN_BYTES // 4, np.float32)
    assert not parallel.blocked(x) and parallel.blocked(large)
    assert not parallel.blocked(large[1:])


def test_elementwise_one_layout_needs_two_blocks_mixed_layouts_do_not(spy, monkeypatch):
    """Same-layout arrays of under two blocks run whole (threads would not pay); mixed
    layouts are cut into rows anyway (their strided reads gain from blocks alone)."""
    monkeypatch.setattr(parallel, "ELEMENTWISE_BLOCK_BYTES", 2048)    # 2520 bytes: < 2 blocks
    x, z = _data(0, np.float32, "channels_last"), _data(1, np.float32, "channels_last")
    y, = parallel.elementwise(np.add, (np.float32,), x, z)
    assert not spy and _bits(y) == _bits(x + z)
    y, = parallel.elementwise(np.add, (np.float32,), x, np.ascontiguousarray(z))
    assert spy == [(3, parallel.get_num_threads())] and _bits(y) == _bits(x + z)


# --- the ops -----------------------------------------------------------------------------

def _forward_backward(op, arrays, gy):
    """op's output and input gradients for upstream gradient gy, by the array engine (fast)
    and by the recorded backward (create_graph=True): both must have the same bits."""
    out = []
    for create_graph in (False, True):
        xs = [md.tensor(a, requires_grad=True) for a in arrays]
        y = op(*xs)
        y.backward(md.tensor(gy), create_graph=create_graph)
        out.append([y.data] + [x.grad.data for x in xs])
    assert [_bits(a) for a in out[0]] == [_bits(a) for a in out[1]]
    return out[0]


def _tanh_ref(x, gy):
    y = np.tanh(x)
    return y, gy * (1 - y * y)


def _sigmoid_ref(x, gy):
    y = (np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))).astype(x.dtype, copy=False)
    return y, gy * y * (1 - y)


def _relu_ref(x, gy):
    return np.maximum(x, 0), gy * (x > 0).astype(gy.dtype)


UNARY = {"relu": (F.relu, _relu_ref), "tanh": (F.tanh, _tanh_ref),
         "sigmoid": (F.sigmoid, _sigmoid_ref)}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_blocked_equals_whole_array(threads, spy, name, dtype, layout):
    op, ref = UNARY[name]
    x, gy = _data(0, dtype, layout), _data(1, dtype, layout)
    y, gx = _run(threads, spy, lambda: _forward_backward(op, [x], gy))
    ry, rgx = ref(x, gy)
    assert _bits(y) == _bits(ry) and _bits(gx) == _bits(rgx)
    assert _channels_last(y) == _channels_last(gx) == (layout == "channels_last")


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_forward_without_grad(threads, spy, name):
    """No mask to keep: ReLU and Tanh are one ufunc, in blocks only on several threads."""
    op, ref = UNARY[name]
    x = _data(0, np.float32, "channels_last")

    def compute():
        with md.no_grad():
            return [op(md.tensor(x)).data]
    y, = _run(threads, spy, compute, blocks_on_one_thread=name == "sigmoid")
    assert _bits(y) == _bits(ref(x, x)[0]) and _channels_last(y)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_relu_blocked_equals_whole_array(threads, spy, dtype, layout):
    a, b, gy = (_data(i, dtype, layout) for i in range(3))
    y, ga, gb = _run(threads, spy, lambda: _forward_backward(add_relu, [a, b], gy))
    s = a + b
    assert _bits(y) == _bits(np.maximum(s, 0))
    g = gy * (np.maximum(s, 0) > 0).astype(dtype)
    assert _bits(ga) == _bits(g) and _bits(gb) == _bits(g)


BINARY = {"add": (lambda a, b: a + b, np.add), "sub": (lambda a, b: a - b, np.subtract),
          "mul": (lambda a, b: a * b, np.multiply), "div": (lambda a, b: a / b, np.divide)}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_forward_blocked_equals_whole_array(threads, spy, name, dtype, layout):
    op, ufunc = BINARY[name]
    a, b = _data(0, dtype, layout), _data(1, dtype, layout) + 0.5

    def compute():
        y = op(md.tensor(a), md.tensor(b)).data
        assert _channels_last(y) == (layout == "channels_last")
        return [y]
    y, = _run(threads, spy, compute, blocks_on_one_thread=False)
    assert _bits(y) == _bits(ufunc(a, b))


@pytest.mark.parametrize("gy_layout", ["c", "fortran"])
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_backward_with_a_gradient_of_another_layout(threads, spy, name, gy_layout):
    """gy NCHW against a channels-last output (LeNet's conv gradients): blocks of rows;
    gy with axis 0 fastest: one whole-array call. The bits of the plain expression."""
    op, ref = UNARY[name]
    x = _data(0, np.float32, "channels_last")
    gy = _data(1, np.float32, "c")
    if gy_layout == "fortran":
        gy = _fortran(gy)
    for n in (1, 2, 3):
        threads(n)
        xt = md.tensor(x, requires_grad=True)
        y = op(xt)
        spy.clear()
        y.backward(md.tensor(gy))
        assert spy == ([(3, n)] if gy_layout == "c" else [])
        assert _bits(xt.grad.data) == _bits(ref(x, gy)[1])


def test_binary_of_mixed_dtypes_or_shapes_is_not_blocked(spy):
    a = _data(0, np.float32, "c")
    assert _bits((md.tensor(a) + md.tensor(a[0])).data) == _bits(a + a[0])
    assert _bits((md.tensor(a) * md.tensor(a.astype(np.float64))).data) == \
        _bits(a * a.astype(np.float64))
    assert not spy


# --- average pooling ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                 dict(kernel_size=3, stride=1, padding=1,
                                      count_include_pad=False)])
def test_avg_pool_blocked_equals_one_block(threads, monkeypatch, dtype, layout, cfg):
    x = _data(0, dtype, layout, (7, 3, 8, 8))
    gy_shape = F.avg_pool2d(md.tensor(x), **cfg).shape
    gy = _data(1, dtype, layout, gy_shape)

    def compute():
        xt = md.tensor(x, requires_grad=True)
        y = F.avg_pool2d(xt, **cfg)
        y.backward(md.tensor(gy))
        assert _channels_last(y.data) == _channels_last(xt.grad.data) == \
            (layout == "channels_last")
        return [y.data, xt.grad.data]
    whole = compute()                                     # one block: the arrays are small
    blocks = []
    original = kernels.map_blocks

    def counted(count, fn, threads, *rest):
        blocks.append((count, threads))
        return original(count, fn, threads, *rest)
    monkeypatch.setattr(kernels, "map_blocks", counted)
    monkeypatch.setattr(kernels, "POOL_BLOCK_BYTES", 1)   # one image per block
    monkeypatch.setattr(kernels, "PARALLEL_MIN_BYTES", 64)
    for n in (1, 2, 3):
        threads(n)
        blocks.clear()
        assert [_bits(a) for a in compute()] == [_bits(a) for a in whole]
        assert blocks == [(7, n), (7, n)]                 # forward and backward


# --- layouts, dtypes, error settings (an independent review's findings) ----------------------

def _sum_bits(a: np.ndarray) -> bytes:
    return a.sum(dtype=a.dtype).tobytes()


def test_ops_give_numpys_layout_whatever_the_thread_count(threads, spy):
    """Same-shape ops take the blocked path only with threads (one ufunc); their output must
    be laid out as NumPy lays out the whole-array result either way, or a later sum (which
    depends on the layout) would change its bits with the thread count."""
    cl, c = md.tensor(_data(0, np.float32, "channels_last")), md.tensor(_data(1, np.float32, "c"))
    wide = md.tensor(_data(2, np.float32, "c", (1, 5, 7, 6))).expand(*SHAPE)   # stride 0
    assert wide.data.strides[0] == 0
    cases = {"add": (lambda a, b: a + b, np.add, (cl, c)),
             "mul": (lambda a, b: a * b, np.multiply, (c, cl)),
             "tanh": (F.tanh, np.tanh, (wide,)),
             "relu": (F.relu, lambda a: np.maximum(a, 0), (wide,))}
    for name, (op, ref, args) in cases.items():
        expected = ref(*(t.data for t in args))
        sums = set()
        for n in (1, 2):
            threads(n)
            y = op(*args).data
            assert y.strides == expected.strides, (name, n, y.strides, expected.strides)
            assert _bits(y) == _bits(expected)
            sums.add(_sum_bits(y))
        assert len(sums) == 1, name


def test_axes_of_length_1_get_numpys_strides_whatever_the_thread_count(threads, spy):
    """A 1-D signal as a conv map, (1, C, L, 1) stored NHWC: NumPy gives the result plain
    F-order strides; the same must come out on threads, or a later cat/pad (which reads the
    strides) lays its result out otherwise and a sum changes its bits."""
    a = np.random.default_rng(0).standard_normal((1, 40, 1, 6)).astype(np.float32)   # NHWC
    x = md.tensor(a.transpose(0, 3, 1, 2))                    # (1, 6, 40, 1), NHWC memory
    assert x.data.flags.f_contiguous and not x.data.flags.c_contiguous
    w = md.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    sums = set()
    for n in (1, 2):
        threads(n)
        for op, ref in ((F.tanh(x), np.tanh(x.data)), (x + w, x.data + w.data),
                        (F.relu(x), np.maximum(x.data, 0))):
            assert op.data.strides == ref.strides, (n, op.data.strides, ref.strides)
        y = F.tanh(x)
        sums.add(md.cat([y, y * 0.5], dim=3).data.sum(dtype=np.float32).tobytes())
    assert len(sums) == 1


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu"])
def test_a_gradient_broadcast_along_axis_0_comes_back_in_c_order(threads, spy, name):
    x0 = _data(0, np.float64, "c")
    w = np.random.default_rng(1).standard_normal(SHAPE[1:])
    for n in (1, 2):
        threads(n)
        x = md.tensor(x0, requires_grad=True)
        (getattr(F, name)(x).sum(0) * md.tensor(w)).sum().backward()
        assert x.grad.data.strides == x0.strides, (name, n, x.grad.data.strides)


def test_relu_of_a_large_bool_array_is_numpys_int64_on_threads(threads, spy):
    x = np.random.default_rng(0).standard_normal(SHAPE) > 0
    for n in (1, 2):
        threads(n)
        y = F.relu(md.tensor(x)).data
        assert y.dtype == np.maximum(x, 0).dtype and _bits(y) == _bits(np.maximum(x, 0))


def test_the_callers_numpy_error_settings_hold_in_every_block(threads, spy):
    import warnings

    threads(2)
    a, b = np.ones(SHAPE), np.ones(SHAPE)
    b.reshape(-1)[-1] = 0.0                          # the last block's last element only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(divide="ignore"):
            assert np.isinf((md.tensor(a) / md.tensor(b)).data).sum() == 1
    for _ in range(5):                               # whichever thread takes that block
        with np.errstate(divide="raise"), pytest.raises(FloatingPointError):
            md.tensor(a) / md.tensor(b)


def test_elementwise_refuses_arrays_of_different_shapes():
    x, y = np.zeros((4, 6)), np.ones((6, 4))
    with pytest.raises(ValueError, match=r"one shape, got \(4, 6\), \(6, 4\)"):
        parallel.elementwise(np.add, (np.float64,), x, y)
