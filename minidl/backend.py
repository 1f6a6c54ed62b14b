"""Array backends: NumPy on 'cpu', CuPy on 'cuda'.

This is the only module that imports cupy. Everything else asks for the array module of
its operands with ``xp = get_array_module(*arrays)`` so that one implementation serves
both devices.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda")

_cupy: ModuleType | None = None
_cupy_checked = False


def _import_cupy() -> ModuleType | None:
    """Import cupy once, lazily, so that ``import minidl`` stays cheap."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: PLC0415 - lazy on purpose

            _cupy = cupy
        except Exception:  # ImportError, or a broken CUDA install
            _cupy = None
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    cp = _import_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cupy_info() -> tuple[str | None, list[str]]:
    """CuPy's version (None when it does not import) and the names of the GPUs it sees."""
    cp = _import_cupy()
    if cp is None:
        return None, []
    names = []
    if cupy_available():
        for i in range(cp.cuda.runtime.getDeviceCount()):
            names.append(cp.cuda.runtime.getDeviceProperties(i)["name"].decode())
    return cp.__version__, names


def _check_device(name: str) -> str:
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; expected one of {DEVICES}")
    if name == "cuda" and not cupy_available():
        if _import_cupy() is None:
            raise RuntimeError(
                "device 'cuda' needs CuPy, which is not installed: "
                "pip install 'minidl[gpu]' (or a cupy-cudaXXx wheel matching your CUDA)")
        raise RuntimeError("device 'cuda' asked for, but CuPy finds no GPU on this machine")
    return name


_default_device: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "minidl_default_device", default=None)
_global_default: str | None = None


def get_default_device() -> str:
    """The device new tensors go to: ``device()``/``set_default_device``, else
    $MINIDL_DEVICE, else 'cpu' (a $MINIDL_DEVICE that cannot be used warns and gives 'cpu')."""
    global _global_default
    local = _default_device.get()
    if local is not None:
        return local
    if _global_default is None:
        name = os.environ.get("MINIDL_DEVICE", "cpu").strip() or "cpu"
        try:
            _global_default = _check_device(name)
        except (ValueError, RuntimeError) as e:
            # an environment variable is a setting, not a request made in code: warn, go on
            warnings.warn(f"MINIDL_DEVICE={name!r} is ignored ({e}); using 'cpu'. Set "
                          "MINIDL_DEVICE to 'cpu' or 'cuda', or call "
                          "md.set_default_device().", RuntimeWarning, stacklevel=2)
            _global_default = "cpu"
    return _global_default


def set_default_device(name: str) -> None:
    """Make ``name`` ('cpu' or 'cuda') the device of newly created tensors, process-wide."""
    global _global_default
    _global_default = _check_device(name)


@contextlib.contextmanager
def device(name: str) -> Iterator[str]:
    """Context manager: tensors created inside go to ``name`` (thread- and task-local)."""
    token = _default_device.set(_check_device(name))
    try:
        yield name
    finally:
        _default_device.reset(token)


def xp_for(name: str) -> ModuleType:
    """The array module of a device name."""
    if _check_device(name) == "cuda":
        return _import_cupy()  # type: ignore[return-value]
    return np


def _is_cupy_array(a: Any) -> bool:
    cp = _cupy
    if cp is None and not _cupy_checked and "cupy" in sys.modules:
        # the caller imported cupy before minidl needed it: its arrays may be CuPy ones
        cp = _import_cupy()
    return cp is not None and isinstance(a, cp.ndarray)


def get_array_module(*xs: Any) -> ModuleType:
    """numpy or cupy, whichever owns the given arrays or Tensors (numpy when none is CuPy)."""
    if _cupy is None and (_cupy_checked or "cupy" not in sys.modules):
        return np
    for x in xs:
        data = getattr(x, "data", x)
        if _is_cupy_array(data):
            return _cupy
    return np


def device_of(array: Any) -> str:
    """'cuda' for a CuPy array, 'cpu' otherwise."""
    return "cuda" if _is_cupy_array(array) else "cpu"


def to_device(array: Any, name: str) -> Any:
    """Copy ``array`` to device ``name`` (no copy when it is already there)."""
    _check_device(name)
    here = device_of(array)
    if here == name:
        return array
    if name == "cuda":
        return _import_cupy().asarray(array)  # type: ignore[union-attr]
    return _cupy.asnumpy(array)  # type: ignore[union-attr]


def to_numpy(array: Any) -> np.ndarray:
    """A host (NumPy) copy or view of ``array``."""
    if _is_cupy_array(array):
        return _cupy.asnumpy(array)  # type: ignore[union-attr]
    return np.asarray(array)


def scatter_add(target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` in place, accumulating over repeated indices.

    On the GPU (``cupyx.scatter_add``) the values of a repeated index are added with atomics
    in no fixed order, so float results can differ in the last bits from run to run
    (docs/reproducibility.md); on the CPU ``np.add.at`` adds them in index order.
    """
    if _is_cupy_array(target):
        import cupyx  # noqa: PLC0415 - part of cupy, lazy like it

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


_rng_np: np.random.Generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed every random generator minidl uses, on both backends."""
    global _rng_np
    _rng_np = np.random.default_rng(seed)
    if cupy_available():
        _import_cupy().random.seed(seed)  # type: ignore[union-attr]


def rng(xp: ModuleType = np) -> Any:
    """The generator minidl draws random numbers from on the backend ``xp``."""
    if xp is np:
        return _rng_np
    return xp.random


def random_uniform(xp: ModuleType, shape: tuple[int, ...], dtype: Any) -> Any:
    """Uniform [0, 1) samples of ``shape`` on the backend ``xp``, from minidl's generator."""
    if xp is np:
        return _rng_np.random(shape, dtype=np.float32 if np.dtype(dtype) == np.float32
                              else np.float64)
    return xp.random.random_sample(shape, dtype=dtype)


def random_normal(xp: ModuleType, shape: tuple[int, ...], dtype: Any) -> Any:
    """Standard normal samples of ``shape`` on the backend ``xp``, from minidl's generator."""
    if xp is np:
        return _rng_np.standard_normal(shape, dtype=np.float32 if np.dtype(dtype) == np.float32
                                       else np.float64)
    return xp.random.standard_normal(shape, dtype=dtype)


def get_rng_state() -> dict:
    """The NumPy generator state (for exact resumption of training)."""
    return _rng_np.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _rng_np.bit_generator.state = state


def synchronize(name: str | None = None) -> None:
    """Wait for queued GPU work to finish (a no-op on 'cpu'); needed before timing."""
    if (name or get_default_device()) == "cuda":
        _import_cupy().cuda.get_current_stream().synchronize()  # type: ignore[union-attr]


def blas_info() -> str:
    """A short description of the BLAS NumPy is linked against."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


# glibc's malloc hands arrays above its mmap threshold straight to the kernel and gives them
# back on free, and trims the heap top once 2x that much is free: each training step then
# page-faults its feature maps, gradients and im2col workspaces in afresh. Keeping arrays up
# to 32 MiB on the heap and trimming only above 128 MiB of free top: a LeNet-5 b64 step
# 14.9 -> 10.4 ms (one thread, benchmarks/bench_cpu_choices.py).
# 32 MiB is the largest threshold glibc's own adaptive rule would reach. MINIDL_MALLOC=0
# leaves malloc alone.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HOST_MMAP_THRESHOLD = 32 * 2**20
HOST_TRIM_THRESHOLD = 128 * 2**20


def _tune_host_allocator() -> bool:
    """Apply the malloc settings above on glibc (Linux); True when they were applied."""
    if os.environ.get("MINIDL_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # noqa: PLC0415 - only needed here

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, HOST_MMAP_THRESHOLD)
                    and libc.mallopt(_M_TRIM_THRESHOLD, HOST_TRIM_THRESHOLD))
    except (OSError, AttributeError):    # not glibc (musl, ...): nothing to tune
        return False


HOST_ALLOCATOR_TUNED = _tune_host_allocator()
