"""Dataset loaders: MNIST and Fashion-MNIST (IDX), CIFAR-10 (python pickles), the bundled
MNIST subset.

Every loader returns host arrays ``(x, y)``: images as uint8 NCHW, labels as int64. Files
are looked up under ``root`` (default ``$MINIDL_DATA`` or ``~/.minidl/datasets``), first in
the dataset's own folder (``root/mnist``, ``root/fashion-mnist``, ``root/cifar10``), then in
``root`` itself. ``download=True`` fetches what is missing into the dataset's folder,
verifying each file's SHA-256 against :data:`CHECKSUMS`.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from .download import DownloadError, default_root, download_file

__all__ = [
    "CHECKSUMS", "MIRRORS", "DatasetNotFoundError", "read_idx", "mnist", "fashion_mnist",
    "cifar10", "mnist_subset", "MNIST_MEAN", "MNIST_STD", "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD", "CIFAR10_MEAN", "CIFAR10_STD", "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES", "standardize_mnist",
]

# Per-channel statistics of the training sets in [0, 1] units, for Normalize.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def standardize_mnist(images: np.ndarray) -> np.ndarray:
    """uint8 MNIST images (any shape) -> float32 ``(x / 255 - MNIST_MEAN) / MNIST_STD``.

    The array version of ``Normalize(MNIST_MEAN, MNIST_STD)`` after scaling to [0, 1], for
    code that works on whole arrays rather than through a DataLoader.

        >>> x = standardize_mnist(np.array([0, 255], np.uint8))
        >>> x.dtype, [round(float(v), 4) for v in x]
        (dtype('float32'), [-0.4242, 2.8215])
    """
    return ((images.astype(np.float32) / 255.0 - MNIST_MEAN[0]) / MNIST_STD[0]).astype(np.float32)

# SHA-256 of every file a loader may download (the published .gz / .tar.gz archives).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "cifar10": {
        "cifar-10-python.tar.gz":
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
}

# Base URLs tried in order when ``url=`` is not given; the checksums make any mirror safe.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

_SUBSET_FILE = Path(__file__).with_name("mnist_subset.npz")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are neither on disk nor downloadable; the message says what goes where."""


# ---- IDX -----------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open_maybe_gz(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) into an array of its stored shape, native byte order.

    The format: two zero bytes, a type code, the number of dimensions, one big-endian int32
    per dimension, then the data in C order.
    """
    path = Path(path)
    try:
        with _open_maybe_gz(path) as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"read_idx: {path} is not a readable (gzip) file: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != need:
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} data bytes but its "
                         f"header announces shape {shape} of {dtype} ({need} bytes); the file "
                         f"is truncated or corrupt")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# ---- file lookup and download -------------------------------------------------------------

def _root(root: str | os.PathLike | None) -> Path:
    # Absolute, so that error messages name the folder unambiguously.
    return (Path(root).expanduser() if root is not None else default_root()).absolute()


def _find(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    for d in dirs:
        for n in names:
            p = d / n
            if p.exists():
                return p
    return None


def _bases(key: str, url: str | Sequence[str] | None) -> list[str]:
    if url is None:
        return list(MIRRORS[key])
    return [url] if isinstance(url, str) else list(url)


def _fetch(key: str, title: str, filename: str, target_dir: Path,
           url: str | Sequence[str] | None, instructions: str) -> Path:
    """Download ``filename`` from the first base URL that serves it with the right checksum."""
    sha = CHECKSUMS[key][filename]
    errors: list[str] = []
    last: DownloadError | None = None
    for base in _bases(key, url):
        full = base.rstrip("/") + "/" + filename
        try:
            return download_file(full, target_dir / filename, sha)
        except DownloadError as e:
            errors.append(f"  {e}")
            last = e
    raise DatasetNotFoundError(f"{title}: downloading {filename} failed:\n" + "\n".join(errors)
                               + "\n" + instructions) from last


def _missing_message(title: str, target_dir: Path, lines: Sequence[str], fn: str) -> str:
    listing = "\n".join(f"  {line}" for line in lines)
    return (f"{title} files not found. Without network access, put these files in "
            f"{target_dir}:\n{listing}\n(or pass root= to the folder holding them; raw or .gz "
            f"files both work). With network access, call {fn}(download=True), optionally "
            f"with url= for a mirror.")


# ---- MNIST / Fashion-MNIST -----------------------------------------------------------------

def _idx_pair(key: str, title: str, fn: str, root: str | os.PathLike | None, train: bool,
              download: bool, url: str | Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    base = _root(root)
    target = base / key
    dirs = [target, base]
    prefix = "train" if train else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    split = "train" if train else "test"
    found = {s: _find(dirs, (s, s + ".gz")) for s in stems}
    missing = [s for s in stems if found[s] is None]
    if missing:
        msg = _missing_message(f"{title} ({split})", target,
                               [f"{s}.gz  (or the uncompressed {s})" for s in missing], fn)
        if not download:
            raise DatasetNotFoundError(msg)
        for s in missing:
            found[s] = _fetch(key, title, s + ".gz", target, url, msg)
    images, labels = read_idx(found[stems[0]]), read_idx(found[stems[1]])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{fn}: expected images (N, H, W) and labels (N,), got "
                         f"{images.shape} from {found[stems[0]]} and {labels.shape} from "
                         f"{found[stems[1]]}")
    return images[:, None].astype(np.uint8, copy=False), labels.astype(np.int64)


def mnist(root: str | os.PathLike | None = None, train: bool = True, download: bool = False,
          url: str | Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits from the IDX files: ``x`` uint8 (N, 1, 28, 28), ``y`` int64 (N,).

    N is 60,000 for ``train=True`` and 10,000 otherwise. Looks in ``root/mnist`` then
    ``root`` for ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (raw or ``.gz``).
    ``download=True`` fetches missing ``.gz`` files from ``url`` (a base URL or a list of
    them; default :data:`MIRRORS`), verifies their SHA-256 and caches them in ``root/mnist``.

    >>> x, y = mnist(train=False)            # doctest: +SKIP
    >>> x.shape, x.dtype, y.dtype            # doctest: +SKIP
    ((10000, 1, 28, 28), dtype('uint8'), dtype('int64'))
    """
    return _idx_pair("mnist", "MNIST", "mnist", root, train, download, url)


def fashion_mnist(root: str | os.PathLike | None = None, train: bool = True,
                  download: bool = False, url: str | Sequence[str] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (same format and file names as MNIST), from ``root/fashion-mnist``.

    Returns ``x`` uint8 (N, 1, 28, 28) and ``y`` int64 (N,); class names are in
    :data:`FASHION_MNIST_CLASSES`. Arguments as for :func:`mnist`.
    """
    return _idx_pair("fashion-mnist", "Fashion-MNIST", "fashion_mnist", root, train, download,
                     url)


# ---- CIFAR-10 ------------------------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"

# The only globals a CIFAR batch pickle needs (a dict of lists, bytes and one ndarray).
# Refusing everything else means a tampered pickle cannot run code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which a "
                                         f"CIFAR batch never needs; refusing to load it")
        return super().find_class(module, name)


def _read_cifar_batch(f: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        # latin1 decodes the Python 2 strings of the original files without loss.
        d = _BatchUnpickler(f, encoding="latin1").load()
    except Exception as e:
        raise ValueError(f"cifar10: cannot read batch {where}: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"cifar10: batch {where} holds a {type(d).__name__}, not a dict")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"cifar10: batch {where} lacks 'data' or 'labels' (keys {sorted(d)})")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise ValueError(f"cifar10: batch {where} has data {data.shape} and labels "
                         f"{labels.shape}; expected (N, 3072) and (N,)")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_from_tar(path: Path, names: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    import tarfile  # noqa: PLC0415 - only needed here

    got: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        # One sequential pass: seeking backwards in a .gz stream would re-decompress it.
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and base not in got:
                    f = tar.extractfile(member)
                    assert f is not None
                    got[base] = _read_cifar_batch(io.BytesIO(f.read()), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"cifar10: cannot read {path}: {e}") from e
    absent = [n for n in names if n not in got]
    if absent:
        raise ValueError(f"cifar10: {path} lacks the batches {absent}")
    return [got[n] for n in names]


def cifar10(root: str | os.PathLike | None = None, train: bool = True, download: bool = False,
            url: str | Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from its python pickle batches: ``x`` uint8 (N, 3, 32, 32), ``y`` int64 (N,).

    N is 50,000 (``data_batch_1`` .. ``data_batch_5``) for ``train=True``, else 10,000
    (``test_batch``). Reads the extracted ``cifar-10-batches-py`` folder if present, else
    ``cifar-10-python.tar.gz`` directly (no extraction), looking in ``root/cifar10`` then
    ``root``. ``download=True`` fetches and verifies the archive into ``root/cifar10``.
    Class names are in :data:`CIFAR10_CLASSES`. The pickles are read with an unpickler
    that accepts only the NumPy array types a batch contains.
    """
    base = _root(root)
    target = base / "cifar10"
    dirs = [target, base]
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    batch_dir = next((d / _CIFAR_DIR for d in dirs
                      if all((d / _CIFAR_DIR / n).exists() for n in names)), None)
    if batch_dir is not None:
        parts = []
        for n in names:
            with open(batch_dir / n, "rb") as f:
                parts.append(_read_cifar_batch(f, str(batch_dir / n)))
    else:
        tar = _find(dirs, (_CIFAR_TAR,))
        if tar is None:
            msg = _missing_message(
                f"CIFAR-10 ({'train' if train else 'test'})", target,
                [f"{_CIFAR_TAR}  (or the extracted folder {_CIFAR_DIR}/ with "
                 f"{', '.join(names)})"], "cifar10")
            if not download:
                raise DatasetNotFoundError(msg)
            tar = _fetch("cifar10", "CIFAR-10", _CIFAR_TAR, target, url, msg)
        parts = _cifar_from_tar(tar, names)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y


# ---- the bundled MNIST subset --------------------------------------------------------------

def mnist_subset(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The bundled 5,000 real MNIST digits, split 4,000 / 1,000 (400 / 100 per class).

    ``split`` is ``'train'`` or ``'test'``. Returns ``x`` uint8 (N, 1, 28, 28) and ``y``
    int64 (N,), in a fixed shuffled order. The split is stored in the file, so it is the
    same on every machine. Needs no network; see ``minidl/data/README.md`` for the origin
    and licence (MNIST by Y. LeCun, C. Cortes and C. Burges, CC BY-SA 3.0).

    >>> x, y = mnist_subset("test")
    >>> x.shape, x.dtype, y.dtype
    ((1000, 1, 28, 28), dtype('uint8'), dtype('int64'))
    """
    if split not in ("train", "test"):
        raise ValueError(f"mnist_subset: split must be 'train' or 'test', got {split!r}")
    with np.load(_SUBSET_FILE) as d:
        idx = d[f"{split}_index"].astype(np.intp)
        x = d["images"][idx][:, None]
        y = d["labels"][idx].astype(np.int64)
    return np.ascontiguousarray(x), y
