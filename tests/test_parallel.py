"""minidl.parallel: thread counts, BLAS thread control, and the threaded CPU conv kernels
agreeing with the single-threaded ones."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import minidl as md
from minidl import parallel
from minidl.kernels import _numpy as K


def _blas_getter():
    controls = parallel._controls()
    if not controls:
        pytest.skip("no OpenBLAS/MKL found in this process")
    return controls[0][0]


def test_set_num_threads_round_trip_and_errors(threads):
    threads(3)
    assert md.get_num_threads() == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="set_num_threads: expected a positive int"):
            md.set_num_threads(bad)
    assert md.get_num_threads() == 3


def test_blas_threads_are_limited_nested_and_restored():
    get = _blas_getter()
    before = get()
    with parallel.blas_threads(3):
        assert get() == 3
        with parallel.blas_threads(2):
            assert get() == 3                 # the outermost setting holds while nested
        assert get() == 3
    assert get() == before
    with parallel.blas_threads(0):            # 0: leave it alone
        assert get() == before


def test_run_workers_runs_every_worker_with_one_blas_thread(threads):
    get = _blas_getter()
    threads(3)
    seen, lock = [], threading.Lock()

    def work():
        with lock:
            seen.append((threading.get_ident(), get()))
        return len(seen)

    results = parallel.run_workers(work, 3)
    assert sorted(results) == [1, 2, 3]
    assert all(n == 1 for _, n in seen)


def test_run_workers_propagates_errors(threads):
    threads(2)

    def work():
        raise RuntimeError("boom in a worker")

    with pytest.raises(RuntimeError, match="boom in a worker"):
        parallel.run_workers(work, 2)


CONFIGS = [  # N, C, H, W, K, kernel, stride, pads, dilation, groups
    (7, 3, 9, 8, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (6, 2, 8, 7, 6, (3, 2), (1, 1), (1, 2, 0, 1), (1, 2), 1),     # offset-major dx
    (5, 6, 7, 8, 5, (2, 2), (1, 1), (0, -1, 1, 0), (1, 1), 1),    # channels-last, cropping
    (5, 4, 8, 9, 6, (3, 2), (2, 2), (1, 0, 2, 1), (1, 1), 2),
    (6, 2, 10, 7, 5, (2, 3), (1, 2), (0, 1, 1, 0), (2, 1), 1),
    (9, 6, 7, 7, 6, (3, 3), (2, 1), (2, 2, 2, 2), (1, 2), 6),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_threaded_conv_kernels_match_single_thread(threads, monkeypatch, cfg):
    N, C, H, W, Kout, kernel, stride, pads, dilation, groups = cfg
    # tiny blocks and no size threshold: several blocks per thread even on small inputs
    monkeypatch.setattr(K, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(K, "BLOCK_BYTES", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32).transpose(0, 3, 1, 2)
    w = rng.standard_normal((Kout, C // groups, *kernel))        # float64: mixed dtypes
    Ho = K.out_size(H, kernel[0], stride[0], pads[0], pads[1], dilation[0])
    Wo = K.out_size(W, kernel[1], stride[1], pads[2], pads[3], dilation[1])
    gy = rng.standard_normal((N, Kout, Ho, 2 * Wo))[..., ::2]     # strided, NCHW

    def run():
        return (K.conv2d_forward(x, w, None, stride, pads, dilation, groups),
                K.conv2d_grad_input(gy, w, (H, W), stride, pads, dilation, groups),
                K.conv2d_grad_weight(x, gy, kernel, stride, pads, dilation, groups))

    threads(1)
    assert K._plan(N, 100) == (1, 1)
    serial = run()
    threads(3)
    assert K._plan(N, 100)[1] == 3
    # one image per block either way, and partial weight gradients summed in block order:
    # the same bits whichever thread ran which block
    for a, b in zip(run(), serial):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(37, 19, 5), (5, 19, 37), (64, 64, 64), (300, 7, 40)])
def test_parallel_matmul_matches_numpy_by_rows_and_columns(threads, monkeypatch, shape):
    monkeypatch.setattr(parallel, "MATMUL_MIN_WORK", 0)
    monkeypatch.setattr(parallel, "MATMUL_BLOCK_WORK", 1)
    monkeypatch.setattr(parallel, "MATMUL_ALIGN", 1)           # several blocks even here
    assert parallel.matmul_blocks(*shape) == parallel.MATMUL_BLOCKS
    m, k, n = shape
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((n, k)).T   # b: a strided view
    threads(3)
    three = parallel.matmul(a, b)
    np.testing.assert_allclose(three, a @ b, rtol=1e-13, atol=1e-13)
    for n_threads in (1, 2, 8):                   # the same blocks, so the same bits
        threads(n_threads)
        np.testing.assert_array_equal(parallel.matmul(a, b), three)


def test_block_boundaries_do_not_depend_on_the_thread_count(threads):
    from minidl.functional.normalization import _Channels

    x = np.ones((64, 16, 32, 32), np.float32).transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    plans, blocks = set(), set()
    for n in (1, 2, 3, 8):
        threads(n)
        nb, used = K._plan(64, 600_000)                # 38 MB of columns: shared out
        assert used == min(n, -(-64 // nb))
        plans.add(nb)
        blocks.add(tuple((s.start, s.stop) for s in _Channels(x).blocks))
    assert len(plans) == 1 and len(blocks) == 1
    assert len(next(iter(blocks))) >= 8                # ... and still enough for 8 threads


def test_matmul_blocks_grow_with_the_work_only():
    w = parallel.MATMUL_BLOCK_WORK
    assert parallel.matmul_blocks(1, 1, parallel.MATMUL_MIN_WORK - 1) == 1
    assert parallel.matmul_blocks(1, 1, 2 * w - 1) == 1      # two blocks need 2x the work
    assert parallel.matmul_blocks(1, 2, w) == 2
    assert parallel.matmul_blocks(1, 2, 2 * w) == 4
    assert parallel.matmul_blocks(4, 2, w) == 8
    assert parallel.matmul_blocks(1024, 1024, 1024) == parallel.MATMUL_BLOCKS   # capped


def test_matmul_cuts_no_sliver_of_a_block(threads, monkeypatch):
    """A cut rounded to whole 16-row tiles must not leave a last block of a row or two: each
    block packs the other operand again."""
    assert parallel.matmul_blocks(33, 2**17, 33) == 2          # 33 rows: not 4 or 8 blocks
    monkeypatch.setattr(parallel, "MATMUL_MIN_WORK", 0)
    monkeypatch.setattr(parallel, "MATMUL_BLOCK_WORK", 1)
    rows = []
    original = np.matmul

    def spy(a, b, out=None):
        rows.append(a.shape[0])
        return original(a, b, out=out)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((33, 40)), rng.standard_normal((40, 33))
    threads(1)
    monkeypatch.setattr(parallel.np, "matmul", spy)
    got = parallel.matmul(a, b)
    monkeypatch.undo()
    assert sorted(rows) == [16, 17]
    np.testing.assert_allclose(got, a @ b, rtol=1e-13, atol=1e-13)


def test_linear_and_matmul_grads_with_threads(threads, monkeypatch):
    monkeypatch.setattr(parallel, "MATMUL_MIN_WORK", 0)
    monkeypatch.setattr(parallel, "MATMUL_BLOCK_WORK", 1)
    threads(2)
    rng = np.random.default_rng(2)
    x = md.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    w = md.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert md.gradcheck(lambda x, w: md.functional.linear(x, w) @ w, x, w)
    x3 = md.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)    # (..., in) inputs
    assert md.gradcheck(lambda x, w: md.functional.linear(x, w), x3, w)


def test_fixed_blas_runs_one_thread_nested_and_concurrent_and_restores(threads):
    get = _blas_getter()
    before = get()
    threads(2)
    with parallel.blas_threads(2):
        parallel.run_workers(lambda: None, 2)
        assert get() == 2                     # minidl switched nothing for good
        with parallel.fixed_blas():
            assert get() == parallel.KERNEL_BLAS_THREADS == 1
            with parallel.fixed_blas():
                assert get() == 1
            assert get() == 1                 # the outermost use restores
        assert get() == 2
    inside, release = threading.Event(), threading.Event()

    def op_on_another_thread():
        with parallel.fixed_blas():
            inside.set()
            release.wait(20)

    t = threading.Thread(target=op_on_another_thread)
    t.start()
    inside.wait(20)
    with parallel.blas_threads(3):            # the user's setting waits for the op to end
        assert get() == 1
        release.set()
        t.join(20)
        assert get() == 3
    assert get() == before


@pytest.mark.parametrize("kernel, stride, pads", [((2, 2), (2, 2), (0, 0, 0, 0)),
                                                  ((3, 3), (2, 2), (1, 1, 1, 1))])
def test_threaded_max_pool_matches_single_thread(threads, monkeypatch, kernel, stride, pads):
    monkeypatch.setattr(K, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(K, "POOL_BLOCK_BYTES", 1)              # one image per block
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 3, 9, 8))
    out_hw = (K.out_size(9, kernel[0], stride[0], pads[0], pads[1], 1),
              K.out_size(8, kernel[1], stride[1], pads[2], pads[3], 1))
    gy = rng.standard_normal((7, 3, *out_hw))

    def run():
        y, idx = K.max_pool2d_forward(x, kernel, stride, pads, out_hw)
        return y, idx, K.max_pool2d_backward(gy, idx, (9, 8), kernel, stride, pads)

    threads(1)
    serial = run()
    threads(3)
    for a, b in zip(run(), serial):
        np.testing.assert_array_equal(a, b)


def test_nested_run_workers_inside_a_worker_runs_inline(threads):
    threads(2)
    inner = []

    def work():
        inner.append(len(parallel.run_workers(lambda: threading.get_ident(), 2)))

    # a deadlock (nested calls waiting on a pool whose threads wait too) fails, not hangs
    outer = threading.Thread(target=parallel.run_workers, args=(work, 2), daemon=True)
    outer.start()
    outer.join(20)
    assert not outer.is_alive(), "nested run_workers deadlocked"
    assert sorted(inner) == [1, 2]                    # the pool thread ran its inner call inline


def test_an_error_in_one_block_stops_the_others_and_is_raised_after_all_finish(threads):
    threads(2)
    done = []

    def block(_, i):
        if i == 0:
            raise RuntimeError("block 0 failed")
        time.sleep(0.01)
        done.append(i)

    with pytest.raises(RuntimeError, match="block 0 failed"):
        parallel.map_blocks(50, block, 2)
    finished = len(done)
    time.sleep(0.1)
    assert len(done) == finished < 49     # nothing runs on after the raise, most never ran


def _conv_in_child(_):
    x = np.ones((64, 16, 32, 32), np.float32)
    w = np.ones((16, 16, 3, 3), np.float32)
    return float(K.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1).sum())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threaded_kernels_work_in_a_forked_child(threads):
    import multiprocessing

    threads(2)
    expected = _conv_in_child(None)            # the parent has used its worker pool
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_conv_in_child, (None,)).get(timeout=60) == expected


def test_bad_minidl_num_threads_warns_and_falls_back_to_the_cores():
    import subprocess
    import sys

    code = "import minidl.parallel as p; print(p.get_num_threads() == p._cores())"
    for value in ("abc", "0", "-2"):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, env=dict(os.environ, MINIDL_NUM_THREADS=value))
        assert res.returncode == 0 and res.stdout.strip() == "True", res.stderr
        assert f"MINIDL_NUM_THREADS must be a positive integer, got {value!r}; using" \
            in res.stderr


@pytest.mark.parametrize("text, expected", [("200000 100000\n", 2), ("150000 100000", 2),
                                            ("max 100000\n", None), ("", None)])
def test_container_cpu_quota_is_read_from_cgroup_v2(tmp_path, text, expected):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert parallel._cgroup_cpus(str(path)) == expected
    assert parallel._cgroup_cpus(str(tmp_path / "missing")) is None
