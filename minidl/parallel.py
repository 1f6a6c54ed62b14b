"""CPU threads: minidl's own worker threads, and the thread count of NumPy's BLAS.

NumPy runs element-wise ops and copies on one core, and only BLAS uses more. The CPU
convolution kernels therefore split the batch into blocks and hand the blocks to
:func:`get_num_threads` worker threads, each running single-threaded BLAS on its block (NumPy
releases the GIL in copies, ufuncs and matrix products), and :func:`matmul` splits large
matrix products by rows the same way. That uses every core for im2col and col2im too, and
small GEMMs run faster whole on one core than split by BLAS across several. Element-wise
computations (activations and their gradients, same-shape arithmetic) run through
:func:`elementwise`, which cuts large arrays into blocks that fit the cache and shares them
out too; :func:`map_blocks` is the hand-out all of these use.

Reproducibility (docs/reproducibility.md): the numbers must not depend on the thread count
or on what ran before. So the blocks' boundaries depend on the shapes only, never on the
number of threads; partial results are added in block order; and every BLAS call minidl
makes runs inside :func:`fixed_blas`, which sets NumPy's BLAS to :data:`KERNEL_BLAS_THREADS`
(one) thread and restores the previous count afterwards (OpenBLAS adds up a product
differently with one thread than with two). Nothing is switched for the rest of the process:
the user's own NumPy code keeps its BLAS threads, and :func:`blas_threads` sets them.

    >>> import minidl as md
    >>> md.set_num_threads(1)          # like torch.set_num_threads: 1 = no worker threads
    >>> md.get_num_threads()
    1

The default is the number of cores this process may use (its affinity mask, capped by a
container's cgroup-v2 CPU quota), or ``MINIDL_NUM_THREADS``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

__all__ = ["ELEMENTWISE_BLOCK_BYTES", "ELEMENTWISE_MIN_BYTES", "ELEMENTWISE_ROW_BYTES",
           "KERNEL_BLAS_THREADS", "blas_controlled", "blas_threads", "blocked", "elementwise",
           "fixed_blas", "get_num_threads", "map_blocks", "matmul", "matmul_blocks",
           "run_workers", "set_num_threads"]


def _cgroup_cpus(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """The CPU quota of this container (cgroup v2 ``cpu.max``, rounded up), or None."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.read().split()
    except OSError:
        return None
    if len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit():
        return None                             # "max 100000": no quota
    return max(1, -(-int(fields[0]) // max(1, int(fields[1]))))


def _cores() -> int:
    """Cores this process may use: its affinity mask, capped by a container's CPU quota
    (a container limited to 2 CPUs on a 64-core host should not start 64 threads)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return min(cores, quota) if quota else cores


def _from_env() -> int:
    value = os.environ.get("MINIDL_NUM_THREADS", "")
    if not value:
        return _cores()
    if not value.strip().isdigit() or int(value) < 1:
        # An environment variable is no explicit request: warn and run, do not die on import
        # (set_num_threads(n) in code still raises on a bad n).
        cores = _cores()
        warnings.warn(f"MINIDL_NUM_THREADS must be a positive integer, got {value!r}; using "
                      f"{cores} (the cores available)", RuntimeWarning, stacklevel=2)
        return cores
    return int(value)


_num_threads = _from_env()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def get_num_threads() -> int:
    """Threads the CPU kernels use (1: everything runs on the calling thread)."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the CPU kernels, as ``torch.set_num_threads``."""
    global _num_threads, _pool, _pool_size
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    with _pool_lock:
        # a new pool is made on next use; the old one is not shut down, since another thread
        # may be submitting to it right now (its idle threads exit once it is collected)
        _num_threads = n
        _pool, _pool_size = None, 0


def run_workers(work: Callable[[], T], n: int) -> list[T]:
    """Run ``work()`` on ``n`` threads at once (the caller being one of them); its results.

    ``work`` should pull its share of a job from a shared queue, so that a thread that gets
    less CPU (a busy machine) simply takes fewer pieces. The threads run inside
    :func:`fixed_blas`, so every BLAS call they make is single-threaded.
    """
    global _pool, _pool_size
    if n <= 1 or getattr(_worker, "busy", False):
        with fixed_blas():  # nested inside a worker: waiting on the pool could deadlock
            return [work()]
    with _pool_lock:
        if _pool is None or _pool_size < n - 1:
            _pool_size = max(n, _num_threads) - 1
            _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="minidl-worker")
        pool = _pool
    # NumPy's error settings (np.errstate) are per thread: the workers take the caller's
    errors = dict(np.geterr(), call=np.geterrcall())
    with fixed_blas():  # held until every worker is done: their BLAS calls run inside it
        futures = [pool.submit(_as_worker, work, errors) for _ in range(n - 1)]
        try:
            results = [work()]
        finally:  # never return (or raise) while workers still write into the caller's arrays
            concurrent.futures.wait(futures)
    results += [f.result() for f in futures]
    return results


_worker = threading.local()


def _after_fork_in_child() -> None:
    """A forked child has the parent's pool object but none of its threads, and a lock held
    by another thread at the fork stays locked: start afresh (multiprocessing uses fork)."""
    global _pool, _pool_size, _pool_lock, _blas_lock, _blas_depth, _fixed_depth
    _pool, _pool_size = None, 0
    _pool_lock, _blas_lock, _blas_depth, _fixed_depth = threading.Lock(), threading.Lock(), 0, 0


def _as_worker(work: Callable[[], T], errors: dict[str, Any]) -> T:
    _worker.busy = True
    try:
        with np.errstate(**errors):
            return work()
    finally:
        _worker.busy = False


# Products below this many multiply-adds run whole, in one BLAS call.
MATMUL_MIN_WORK = 2**23
# Larger ones are cut into row (or column) blocks of at least this many multiply-adds each,
# 2, 4 or at most MATMUL_BLOCKS of them: the cut depends on the shapes only, so that every
# thread count computes each output element by the same BLAS call on the same block. Each
# block packs the shared operand again, so more blocks than the work needs cost time:
# (128, 784) @ (784, 512) takes 0.91 ms in eight blocks and 0.75 ms whole on one core
# (docs/benchmarks.md); eight blocks are kept for products large enough to feed eight cores.
# Block widths are rounded up to MATMUL_ALIGN rows or columns, so that BLAS's kernels work on
# whole register tiles.
MATMUL_BLOCK_WORK = 2**24
MATMUL_BLOCKS = 8
MATMUL_ALIGN = 16


def matmul_blocks(m: int, k: int, n: int) -> int:
    """How many blocks :func:`matmul` cuts an (m, k) @ (k, n) product into: 1 below
    :data:`MATMUL_MIN_WORK`, else the largest power of two up to :data:`MATMUL_BLOCKS` that
    leaves each block :data:`MATMUL_BLOCK_WORK` multiply-adds and :data:`MATMUL_ALIGN` rows
    (or columns) of the side it cuts.

    >>> matmul_blocks(128, 784, 512), matmul_blocks(1024, 1024, 1024), matmul_blocks(64, 400, 120)
    (2, 8, 1)
    """
    work, size = m * k * n, max(m, n)        # (the cut runs along the longer side)
    if work < MATMUL_MIN_WORK:
        return 1
    blocks = 1
    while (blocks < MATMUL_BLOCKS and work >= 2 * blocks * MATMUL_BLOCK_WORK
           and size >= 2 * blocks * MATMUL_ALIGN):
        blocks *= 2
    return blocks


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` inside :func:`fixed_blas`. A large 2-D NumPy product (m, k) @ (k, n) is cut
    into :func:`matmul_blocks` row (or, when n > m, column) blocks shared out among the worker
    threads; the cut depends on the shapes only, so the bits do not depend on the thread
    count. Anything else (N-D, 1-D, CuPy arrays): ``a @ b``."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b                  # CuPy (or anything without NumPy's BLAS)
    with fixed_blas():
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            return a @ b
        blocks = matmul_blocks(a.shape[0], a.shape[1], b.shape[1])
        if blocks == 1:
            return a @ b
        m, n = a.shape[0], b.shape[1]
        out = np.empty((m, n), np.result_type(a, b))
        by_rows = m >= n
        size = m if by_rows else n
        step = -(-size // blocks)
        aligned = -(-step // MATMUL_ALIGN) * MATMUL_ALIGN
        if size - (-(-size // aligned) - 1) * aligned >= MATMUL_ALIGN:
            step = aligned    # whole register tiles, unless that leaves a sliver of a block

        def block(_: None, i: int) -> None:
            lo, hi = i * step, min(size, (i + 1) * step)
            if by_rows:
                np.matmul(a[lo:hi], b, out=out[lo:hi])
            else:
                np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

        map_blocks(-(-size // step), block, get_num_threads())
        return out


def map_blocks(count: int, fn: Callable[[Any, int], T], threads: int,
               workspace: Callable[[], Any] = lambda: None) -> list[T]:
    """``[fn(ws, i) for i in range(count)]``, shared out among up to ``threads`` threads.

    Each thread makes its own ``ws = workspace()`` and pulls the next index until none are
    left, so a thread that gets less CPU takes fewer blocks. The results come back in index
    order, so that summing them gives the same bits whichever thread ran which block, and
    for any thread count as long as the caller's blocks do not depend on it (none of
    minidl's do). The blocks run inside :func:`fixed_blas`. After an error in one block
    the other threads take no new blocks, and the error is raised once all have stopped.
    """
    if threads <= 1 or count <= 1:          # no hand-out needed: the common small case
        with fixed_blas():
            ws = workspace()
            return [fn(ws, i) for i in range(count)]
    results: list[Any] = [None] * count
    indices = iter(range(count))
    lock = threading.Lock()
    failed = False

    def work() -> None:
        nonlocal failed
        ws = workspace()
        while True:
            with lock:
                i = None if failed else next(indices, None)
            if i is None:
                return
            try:
                results[i] = fn(ws, i)
            except BaseException:
                failed = True
                raise

    run_workers(work, max(1, min(threads, count)))
    return results


# ---------------------------------------------------------------------------------------------
# element-wise ops in blocks

# Arrays below this many bytes (of the largest dtype) run in one call on the calling thread:
# handing out blocks costs about 0.1 ms at two threads (benchmarks/bench_threads.py).
ELEMENTWISE_MIN_BYTES = 2**20
# Bytes per block of arrays that share one layout: small enough that a block's temporaries
# stay in the 2 MiB L2 cache, large enough that the Python calls per block are few; arrays of
# less than two blocks run whole. `python benchmarks/bench_threads.py` (2-core Xeon): add +
# ReLU + mask of (64, 16, 32, 32) float32 channels-last, 0.88 ms whole, 0.85 / 0.84 ms in
# 512 KiB / 1 MiB blocks at one thread, 0.68 / 0.64 ms at two.
ELEMENTWISE_BLOCK_BYTES = 2**20
# Bytes per block of rows of arrays of mixed layouts, where one operand is read across its
# strides: blocks pay there even on one thread. The same script, tanh's gradient with gy NCHW
# and y channels-last (256, 6, 28, 28) float32: 1.47 ms whole; 1.23 / 1.25 / 1.34 ms at one
# thread with 256 KiB / 512 KiB / 1 MiB blocks, 1.17 / 0.95 / 0.89 at two.
ELEMENTWISE_ROW_BYTES = 2**19


def blocked(a: Any) -> bool:
    """Whether :func:`elementwise` would cut ``a`` into blocks: a NumPy array of at least
    :data:`ELEMENTWISE_MIN_BYTES`. An op can test it first and run its plain whole-array
    expression otherwise, which saves the helper's microsecond on small arrays."""
    return type(a) is np.ndarray and a.nbytes >= ELEMENTWISE_MIN_BYTES


def _memory_order(a: np.ndarray) -> tuple[int, ...] | None:
    """The axis order in which ``a``'s elements lie contiguously in memory (C order for a
    C-contiguous array, (0, 2, 3, 1) for an (N, C, H, W) array stored NHWC), or None when
    they do not (a view with gaps, a broadcast, negative strides)."""
    if a.flags.c_contiguous:
        return tuple(range(a.ndim))
    order = tuple(sorted(range(a.ndim), key=lambda i: -a.strides[i]))
    return order if a.transpose(order).flags.c_contiguous else None


def _flat(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray | None:
    """``a`` as a 1-D view in the memory order ``order``, or None if it is not laid out so."""
    t = a.transpose(order)
    return t.reshape(-1) if t.flags.c_contiguous else None


def _outer_first(a: np.ndarray) -> bool:
    """Whether axis 0 of ``a`` is its outermost in memory (or broadcast): then a block of
    rows along it is one stretch of memory (or none)."""
    return a.strides[0] == 0 or all(abs(s) <= abs(a.strides[0]) for s in a.strides[1:])


def _cut(arrays: tuple[np.ndarray, ...], itemsize: int
         ) -> tuple[list[np.ndarray] | tuple[np.ndarray, ...], int, int] | None:
    """How :func:`elementwise` cuts NumPy ``arrays`` of one shape: (the views to slice, their
    length, the block length), or None for one whole-array call."""
    first = arrays[0]
    nbytes = first.size * itemsize
    if nbytes < ELEMENTWISE_MIN_BYTES:
        return None
    order = _memory_order(first)
    flats = [_flat(a, order) for a in arrays] if order is not None else [None]
    if all(f is not None for f in flats):          # one layout: flat blocks in memory order
        if nbytes < 2 * ELEMENTWISE_BLOCK_BYTES:
            return None
        return flats, first.size, max(1, ELEMENTWISE_BLOCK_BYTES // itemsize)
    if first.ndim and all(_outer_first(a) for a in arrays):   # mixed: blocks of rows
        row = first.size // first.shape[0] * itemsize
        return arrays, first.shape[0], max(1, ELEMENTWISE_ROW_BYTES // row)
    return None


def elementwise(fn: Callable[..., object], out_dtypes: Sequence[Any],
                *arrays: Any) -> tuple[Any, ...]:
    """The outputs of ``fn(*ins, *outs)``, an element-wise computation over arrays of one
    shape, computed block by block on the worker threads.

    ``fn`` reads the input arrays and writes its results into the output arrays it is given,
    one per dtype of ``out_dtypes``, as a ufunc does (a ufunc is such an ``fn``:
    ``np.tanh(x, y)``). The outputs have the inputs' shape and the memory layout a NumPy
    ufunc over the inputs would give its result (the inputs' common layout, C-contiguous or
    channels-last as the conv kernels make them; C order for mixed or broadcast layouts),
    whether or not the arrays are cut; they are returned as a tuple. Arrays of different
    shapes raise ValueError.

    When every array (outputs included) has one dense layout, each is viewed flat in its
    memory order and the range is cut into blocks of :data:`ELEMENTWISE_BLOCK_BYTES`, so that
    temporaries inside ``fn`` stay in the cache; ``fn`` runs once per block, on 1-D views.
    Arrays of mixed layouts (an NCHW gradient for a channels-last output, a broadcast) are
    cut into blocks of rows along axis 0 of about :data:`ELEMENTWISE_ROW_BYTES` instead, when
    axis 0 is outermost in each. The blocks are shared out among :func:`get_num_threads`
    threads. Their boundaries depend on the shapes and dtypes only, and an element-wise
    ``fn`` computes each element by the same ufuncs whatever block it falls in, so the bits
    equal those of one whole-array call, for every thread count.

    One whole-array call is made instead for arrays below :data:`ELEMENTWISE_MIN_BYTES`,
    arrays of one layout smaller than two blocks, 0-d arrays, layouts that fit neither cut,
    and arrays that are not NumPy's (CuPy: the outputs are ``np.empty_like`` the first input,
    which dispatches to the array's own library, NEP 18). NumPy's floating-point error
    settings (``np.errstate``) of the caller apply in every block (:func:`run_workers`).

        >>> import numpy as np
        >>> x = np.linspace(-1, 1, 5)
        >>> y, mask = elementwise(lambda x, y, m: (np.maximum(x, 0, out=y),
        ...                                        np.greater(x, 0, out=m)), [x.dtype, bool], x)
        >>> y.tolist(), mask.tolist()
        ([0.0, 0.0, 0.0, 0.5, 1.0], [False, False, False, True, True])
    """
    first = arrays[0]
    if any(a.shape != first.shape for a in arrays[1:]):
        raise ValueError("elementwise: the arrays must have one shape, got "
                         + ", ".join(str(tuple(a.shape)) for a in arrays))
    if not all(type(a) is np.ndarray for a in arrays):    # CuPy: one call, its own layout
        outs = tuple(np.empty_like(first, dtype=dt, order="K") for dt in out_dtypes)
        fn(*arrays, *outs)
        return outs
    outs = tuple(_allocated_like_ufunc(arrays, dt) for dt in out_dtypes)
    itemsize = max(np.dtype(a.dtype).itemsize for a in (*arrays, *outs))
    cut = _cut((*arrays, *outs), itemsize)
    if cut is None:
        fn(*arrays, *outs)
        return outs
    views, size, step = cut

    def block(_: None, i: int) -> None:
        lo = i * step
        fn(*(v[lo:lo + step] for v in views))

    map_blocks(-(-size // step), block, get_num_threads())
    return outs


def _allocated_like_ufunc(arrays: tuple[np.ndarray, ...], dtype: Any) -> np.ndarray:
    """A new array of ``dtype`` laid out as a NumPy ufunc over ``arrays`` lays out its result
    (its iterator's order 'K': the inputs' common layout, C order for mixed or broadcast
    ones), so that an op's output layout, and with it the bits of any later sum, is the same
    whether or not the op ran in blocks."""
    # NumPy's own fast path for contiguous operands: plain C (or F) strides, also on axes of
    # length 1, where the iterator would keep the inputs' arbitrary ones
    if all(a.flags.c_contiguous for a in arrays):
        return np.empty(arrays[0].shape, dtype)
    if all(a.flags.f_contiguous for a in arrays):
        return np.empty(arrays[0].shape, dtype, order="F")
    n = len(arrays)
    it = np.nditer([*arrays, None], flags=["zerosize_ok", "refs_ok"],
                   op_flags=[["readonly"]] * n + [["writeonly", "allocate", "no_broadcast"]],
                   op_dtypes=[None] * n + [np.dtype(dtype)], order="K")
    return it.operands[n]


# ---------------------------------------------------------------------------------------------
# BLAS threads

_BLAS_THREAD_FUNCS = (  # (get, set) in OpenBLAS builds: numpy's wheels, system, 64-bit ints
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)


def _blas_libraries() -> list[Any]:
    """ctypes handles of the OpenBLAS/MKL libraries NumPy has loaded (best effort)."""
    paths: list[str] = []
    try:  # Linux: every mapped shared object
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = [line.split()[-1] for line in f if "blas" in line or "mkl" in line]
    except OSError:  # elsewhere: the libraries bundled with NumPy's wheel
        here = Path(np.__file__).resolve().parent
        for libs in (here.parent / "numpy.libs", here / ".dylibs"):   # Windows, macOS
            if libs.is_dir():
                paths += [str(p) for p in libs.iterdir() if "blas" in p.name or "mkl" in p.name]
    handles = []
    for path in dict.fromkeys(p for p in paths if os.path.isfile(p)):
        try:
            handles.append(ctypes.CDLL(path))
        except OSError:
            continue
    return handles


_blas_controls: list[tuple[Any, Any]] | None = None
_blas_lock = threading.Lock()
_blas_depth = 0           # nesting of blas_threads() across threads
_blas_saved: list[int] = []
_fixed_depth = 0          # nesting of fixed_blas() across threads
_fixed_saved: list[int] = []

#: BLAS threads inside every minidl op: one, since minidl's own workers share out the big
#: products, and a fixed count gives the same sums whatever ran before.
KERNEL_BLAS_THREADS = 1


def _controls() -> list[tuple[Any, Any]]:
    """(getter, setter) of each BLAS library found, looked up once."""
    global _blas_controls
    if _blas_controls is None:
        found = []
        for lib in _blas_libraries():
            for get_name, set_name in _BLAS_THREAD_FUNCS:
                getter, setter = getattr(lib, get_name, None), getattr(lib, set_name, None)
                if getter is not None and setter is not None:
                    found.append((getter, setter))
                    break
        _blas_controls = found
    return _blas_controls


def blas_controlled() -> bool:
    """Whether minidl found the thread control of NumPy's BLAS (OpenBLAS or MKL). Without it
    BLAS keeps its own thread count, and minidl's results may depend on it: start Python with
    ``OPENBLAS_NUM_THREADS=1`` (or your BLAS's variable) for the guarantees of
    docs/reproducibility.md."""
    return bool(_controls())


def _set_all(counts: list[int]) -> None:
    for (get, set_), n in zip(_controls(), counts):
        if get() != n:
            set_(n)


class _FixedBlas:
    """The context manager :func:`fixed_blas` returns (one object, re-entrant: the counts
    live in module globals, guarded by ``_blas_lock``). It runs around every BLAS call of
    minidl, so it does as little as it can: one ctypes call to read the count on entry, and
    a setting and a restore only when the count differs."""

    def __enter__(self) -> None:
        global _fixed_depth, _fixed_saved
        with _blas_lock:
            if _fixed_depth == 0:
                saved = []
                for get, set_ in _blas_controls if _blas_controls is not None else _controls():
                    n = get()
                    saved.append(n)
                    if n != KERNEL_BLAS_THREADS:
                        set_(KERNEL_BLAS_THREADS)
                _fixed_saved = saved
            _fixed_depth += 1

    def __exit__(self, *exc: object) -> None:
        global _fixed_depth
        with _blas_lock:
            _fixed_depth -= 1
            if _fixed_depth == 0:
                for (_, set_), n in zip(_blas_controls or (), _fixed_saved):
                    if n != KERNEL_BLAS_THREADS:
                        set_(n)


_FIXED = _FixedBlas()


def fixed_blas() -> _FixedBlas:
    """Context manager: NumPy's BLAS runs with :data:`KERNEL_BLAS_THREADS` threads inside,
    and gets its previous thread count back at the end.

    Every minidl op that calls BLAS does so inside it (through :func:`matmul` and
    :func:`map_blocks`). Nested and concurrent uses share one setting: the first to enter
    sets it, the last to leave restores it. A region costs a few microseconds (two ctypes
    calls, a lock, and Python).

        >>> import numpy as np
        >>> from minidl import parallel
        >>> with parallel.fixed_blas():
        ...     y = np.ones((4, 3)) @ np.ones((3, 2))
        >>> float(y[0, 0])
        3.0
    """
    return _FIXED


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run NumPy's BLAS with ``n`` threads inside the block, then restore the count.

    This is for NumPy code of your own: minidl's ops always run BLAS with
    :data:`KERNEL_BLAS_THREADS` threads (:func:`fixed_blas`), whatever is set here. The count
    is process-wide; nested or concurrent uses keep the outermost setting until the last one
    exits. ``None`` or 0 leaves BLAS alone, as does a BLAS whose thread count cannot be found
    (OpenBLAS and MKL can).
    """
    global _blas_depth, _blas_saved, _fixed_saved
    if not n:
        yield
        return
    with _blas_lock:
        if _blas_depth == 0:
            # inside a minidl op on another thread, the new count takes effect when it ends
            current = _fixed_saved if _fixed_depth else [int(get()) for get, _ in _controls()]
            _blas_saved = list(current)
            if _fixed_depth:
                _fixed_saved = [int(n)] * len(current)
            else:
                _set_all([int(n)] * len(current))
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                if _fixed_depth:
                    _fixed_saved = _blas_saved
                else:
                    _set_all(_blas_saved)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
