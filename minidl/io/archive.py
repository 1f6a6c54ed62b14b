"""Saving and loading minidl checkpoints: ``.npz`` or ``.safetensors``, written atomically.

``save(obj, path)`` takes a Module (saves its ``state_dict``), an Optimizer (its
``state_dict``), a Tensor/array, or any nesting of dicts, lists and tuples of those and of
plain Python values -- e.g. ``{'model': model.state_dict(), 'optimizer':
opt.state_dict(), 'epoch': 3}``. Arrays are stored under dotted keys (``model.fc.weight``),
so a saved state dict is also readable with ``numpy.load``; the nesting and the plain values
travel as a small JSON record inside the archive. ``load(path)`` returns the same
structure with NumPy arrays in place of Tensors.

The file is first written to a temporary file in the same directory (``.NAME.minidl-tmp-PID``)
and then renamed over the target (``os.replace`` is atomic), so an interrupted save never
leaves a half-written checkpoint or destroys the previous one; the temporary files of saves
killed mid-way (their process is gone) are removed by the next save into that folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import to_numpy

__all__ = ["save", "load", "CheckpointError", "read_checkpoint", "read_safetensors",
           "remove_stale_temporaries"]

_META = "__minidl_meta__"
_FORMAT = 1


class CheckpointError(ValueError):
    """A file that is not a readable minidl checkpoint (corrupt, truncated, wrong format)."""


# safetensors dtype codes -> NumPy dtypes (BF16 is widened by hand below).
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path: Path, op: str = "load") -> tuple[dict[str, np.ndarray], dict | None]:
    """Parse a .safetensors file into ``({name: array}, metadata or None)``.

    The format is an 8-byte little-endian header size, a JSON header, then the raw data. This
    reader needs no ``safetensors`` package and widens bfloat16 to float32, which NumPy lacks.
    A damaged file raises :class:`CheckpointError` whose message starts with ``op``.
    """
    raw = path.read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"{op}: {path} is too short to be a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n <= 0 or 8 + n > len(raw):
        raise CheckpointError(f"{op}: {path} has a corrupt safetensors header "
                              f"(header size {n}, file size {len(raw)})")
    try:
        header = json.loads(raw[8:8 + n])
        if not isinstance(header, dict):
            raise ValueError(f"the header is a {type(header).__name__}, not an object")
    except ValueError as e:
        raise CheckpointError(f"{op}: {path} has a corrupt safetensors header: {e}") from None
    data = memoryview(raw)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name != "__metadata__":
            out[name] = _safetensors_array(data, name, info, f"{op}: {path}")
    return out, header.get("__metadata__")


def _safetensors_array(data: memoryview, name: str, info: Any, where: str) -> np.ndarray:
    """One tensor of a safetensors file, from its header entry ``info``."""
    try:
        start, end = (int(v) for v in info["data_offsets"])
        shape = tuple(int(v) for v in info["shape"])
        dt = info["dtype"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: tensor {name!r} has a damaged header entry "
                              f"{info!r} ({type(e).__name__}: {e})") from None
    if end > len(data) or not 0 <= start <= end:
        raise CheckpointError(f"{where}: tensor {name!r} lies outside the file "
                              f"(offsets {start}..{end}, data size {len(data)})")
    if dt == "BF16":  # bfloat16 = the top 16 bits of a float32
        arr = (np.frombuffer(data[start:end], dtype="<u2").astype(np.uint32) << 16).view(
            np.float32)
    elif dt in _SAFETENSORS_DTYPES:
        arr = np.frombuffer(data[start:end],
                            dtype=np.dtype(_SAFETENSORS_DTYPES[dt]).newbyteorder("<"))
    else:
        raise CheckpointError(f"{where}: tensor {name!r} has unsupported dtype {dt}")
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise CheckpointError(f"{where}: tensor {name!r} has {arr.size} values but shape "
                              f"{shape}")
    return arr.reshape(shape).astype(arr.dtype.newbyteorder("="))


def _is_array(x: Any) -> bool:
    return isinstance(x, (Tensor, np.ndarray)) or hasattr(x, "__cuda_array_interface__")


def _encode(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of ``obj``; arrays go into ``arrays`` under dotted keys."""
    if _is_array(obj):
        key = prefix or "array"
        base, n = key, 1
        while key in arrays or key == _META:
            key, n = f"{base}#{n}", n + 1
        arr = to_numpy(obj.data if isinstance(obj, Tensor) else obj)
        # not np.ascontiguousarray: it turns 0-d arrays (e.g. a step counter) into 1-d
        arrays[key] = arr if arr.flags.c_contiguous else np.array(arr, order="C")
        return {"__array__": key}
    if hasattr(obj, "state_dict") and callable(obj.state_dict):  # Module, Optimizer, scheduler
        return _encode(obj.state_dict(), prefix, arrays)
    if isinstance(obj, Mapping):
        items = list(obj.items())
        simple = all(isinstance(k, str) and not k.startswith("__") for k, _ in items)
        enc = [(k, _encode(v, f"{prefix}.{k}" if prefix else str(k), arrays)) for k, v in items]
        if simple:
            return dict(enc)
        for k, _ in items:
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"save: dict key {k!r} at {prefix or '<root>'} must be a "
                                "str, int, float or bool")
        return {"__dict__": [[k, v] for k, v in enc]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}" if prefix else str(i), arrays)
                              for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}" if prefix else str(i), arrays)
                for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save: cannot store a {type(obj).__name__} at "
                    f"{prefix or '<root>'}; use arrays, Tensors, numbers, strings, None and "
                    "dicts/lists/tuples of them")


def _decode(skel: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(skel, dict):
        if "__array__" in skel:
            return arrays[skel["__array__"]]
        if "__tuple__" in skel:
            return tuple(_decode(v, arrays) for v in skel["__tuple__"])
        if "__dict__" in skel:
            return {k: _decode(v, arrays) for k, v in skel["__dict__"]}
        return {k: _decode(v, arrays) for k, v in skel.items()}
    if isinstance(skel, list):
        return [_decode(v, arrays) for v in skel]
    return skel


# Temporary files of a save are named '.NAME.minidl-tmp-PID' (or '-PID-N' when this process
# already has one there): recognisable, and their writer's pid tells whether it is still alive.
_TMP = re.compile(r"^\..+\.minidl-tmp-(\d+)(?:-\d+)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # someone else's live process (or we cannot tell): leave its file
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files that saves of processes no longer alive left in
    ``folder`` (killed mid-save); returns their names. Every :func:`save` does this."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):   # another process may remove it first
                os.unlink(os.path.join(folder, name))
                removed.append(name)
    return removed


def _open_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, opened exclusively: (fd, its path)."""
    base = path.parent / f".{path.name}.minidl-tmp-{os.getpid()}"
    for n in range(1000):
        tmp = str(base) if n == 0 else f"{base}-{n}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"save: too many temporary files {base}-* beside {path}")


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file and rename it over ``path``: the previous file stays
    whole until the new one is complete, whatever kills the process in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = _open_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj: Any, path: str | os.PathLike, compress: bool = False) -> None:
    """Save ``obj`` (Module, Optimizer, state dict, arrays, nested containers) to ``path``.

    ``.safetensors`` paths use the safetensors format (writing needs the safetensors
    package; arrays as tensors, the rest as metadata); any other path is written as an
    ``.npz`` archive under exactly that name. ``compress=True`` deflates the npz members.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    skel = {"minidl": _FORMAT, "root": _encode(obj, "", arrays)}
    meta = json.dumps(skel, allow_nan=True)
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import save as st_save  # noqa: PLC0415 - optional
        except ImportError:
            raise ImportError("save: .safetensors needs the safetensors package "
                              "(pip install safetensors), or use a .npz path") from None
        blob = st_save(arrays, metadata={_META: meta})
        _atomic_write(path, lambda f: f.write(blob))
        return

    def write(f: Any) -> None:
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as zf:
            for key, arr in arrays.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, arr, allow_pickle=False)
            with zf.open(_META + ".npy", "w") as fh:
                np.lib.format.write_array(fh, np.frombuffer(meta.encode(), dtype=np.uint8),
                                          allow_pickle=False)
    _atomic_write(path, write)


def load(path: str | os.PathLike) -> Any:
    """Load what :func:`save` wrote (arrays come back as NumPy arrays).

    A plain ``.npz`` written by NumPy loads as a flat dict of arrays. A corrupt, truncated
    or foreign file raises :class:`CheckpointError` naming the file.
    """
    return read_checkpoint(Path(path), "load")


def read_checkpoint(path: Path, op: str) -> Any:
    """:func:`load` for callers that name themselves (``op``) in its errors."""
    if not path.exists():
        raise FileNotFoundError(f"{op}: no such checkpoint: {path}")
    if path.suffix == ".safetensors":
        arrays, metadata = read_safetensors(path, op)
        meta = (metadata or {}).get(_META)
    else:
        arrays = _read_npz(path, op)
        raw = arrays.pop(_META, None)
        meta = None if raw is None else raw.tobytes().decode("utf-8", errors="replace")
    if meta is None:
        return arrays
    try:
        skel = json.loads(meta)
        if skel.get("minidl") != _FORMAT:
            raise CheckpointError(f"{op}: {path} has checkpoint format {skel.get('minidl')}, "
                                  f"this minidl reads format {_FORMAT}")
        return _decode(skel["root"], arrays)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{op}: {path} has a damaged minidl record: {e}") from e


def _read_npz(path: Path, op: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (all read now, so CRC errors show here)."""
    try:
        opened = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as e:
        raise _unreadable(path, op, e) from e
    if not isinstance(opened, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{op}: {path} holds a single array, not a checkpoint; save a "
                              f"dict of arrays (minidl.io.save or numpy.savez)")
    try:
        with opened as z:
            return {k: z[k] for k in z.files}
    except _NPZ_ERRORS as e:
        raise _unreadable(path, op, e) from e


_NPZ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError)


def _unreadable(path: Path, op: str, e: Exception) -> CheckpointError:
    return CheckpointError(f"{op}: {path} is not a readable .npz checkpoint (corrupt or "
                           f"truncated?): {type(e).__name__}: {e}")
