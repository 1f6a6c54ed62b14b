"""minidl.data: loaders on generated files, downloads from a local server, the bundled subset,
transforms against per-image oracles, and the DataLoader's order, dtypes and resumption."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import importlib.util
import io
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl as md
import minidl.data as D
from minidl.backend import to_numpy
from minidl.data import datasets as dsmod

ROOT = Path(__file__).resolve().parent.parent


# ---- file writers (independent of the readers under test) ---------------------------------

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    head = bytes([0, 0, _IDX_CODES[np.dtype(big.dtype)], arr.ndim])
    head += b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + big.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def write_mnist_dir(folder: Path, gz: bool, n_train: int = 12, n_test: int = 7) -> dict:
    arrays = {}
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = fake_mnist(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)
        arrays[prefix] = (x, y)
    return arrays


def cifar_batch_bytes(data: np.ndarray, labels: list[int], legacy: bool) -> bytes:
    """A batch pickle like the published ones (legacy: str keys, numpy.core module path)."""
    key = str if legacy else (lambda s: s.encode())
    d = {key("batch_label"): "batch", key("labels"): labels, key("data"): data,
         key("filenames"): [f"img{i}.png" for i in range(len(labels))]}
    raw = pickle.dumps(d, protocol=2)
    if legacy:
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return raw


def fake_cifar(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def cifar_files(n: int = 4, legacy: bool = False) -> dict[str, tuple[bytes, np.ndarray, list]]:
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = fake_cifar(n + i, 10 + i)
        out[name] = (cifar_batch_bytes(data, labels, legacy), data, labels)
    return out


def cifar_tar_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (raw, _, _) in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def expected_cifar(files: dict, train: bool) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{k}" for k in range(1, 6)] if train else ["test_batch"]
    x = np.concatenate([files[n][1] for n in names]).reshape(-1, 3, 32, 32)
    y = np.concatenate([files[n][2] for n in names]).astype(np.int64)
    return x, y


# ---- IDX -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, dtype, gz):
    arr = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    p = write_idx(tmp_path / "a-idx3", arr, gz)
    out = D.read_idx(p)
    assert out.shape == (2, 3, 5) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_corrupt_files(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    good = idx_bytes(arr)
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        D.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x00" + good[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(tmp_path / "magic")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(ValueError, match="not a readable"):
        D.read_idx(tmp_path / "cut.gz")


# ---- MNIST / Fashion-MNIST loaders ---------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["mnist", ""])
def test_mnist_reads_raw_and_gz_from_root_or_subfolder(tmp_path, gz, sub):
    arrays = write_mnist_dir(tmp_path / sub if sub else tmp_path, gz)
    for train, prefix in ((True, "train"), (False, "t10k")):
        x, y = D.mnist(root=tmp_path, train=train)
        ex, ey = arrays[prefix]
        assert x.dtype == np.uint8 and x.shape == (len(ex), 1, 28, 28)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 0], ex)
        np.testing.assert_array_equal(y, ey)


def test_fashion_mnist_uses_its_own_folder_and_default_root_env(tmp_path, monkeypatch):
    write_mnist_dir(tmp_path / "mnist", gz=True)
    fashion = write_mnist_dir(tmp_path / "fashion-mnist", gz=False, n_train=5)
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path))
    assert D.default_root() == tmp_path
    x, y = D.fashion_mnist(train=True)
    np.testing.assert_array_equal(x[:, 0], fashion["train"][0])
    assert len(D.mnist()[0]) == 12


def test_mnist_mismatched_counts_is_an_error(tmp_path):
    x, y = fake_mnist(5, 0)
    write_idx(tmp_path / "train-images-idx3-ubyte", x, True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:4], True)
    with pytest.raises(ValueError, match=r"\(5, 28, 28\).*\(4,\)"):
        D.mnist(root=tmp_path)


def test_missing_files_error_lists_exactly_the_missing_files(tmp_path):
    x, y = fake_mnist(3, 0)
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte", y, True)
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.mnist(root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg
    assert "labels" not in msg.split("files in")[1].split("(or pass")[0]
    with pytest.raises(D.DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        D.cifar10(root=tmp_path)
    assert isinstance(info.value, FileNotFoundError)


# ---- CIFAR-10 ------------------------------------------------------------------------------

@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("layout", ["folder", "tar", "tar-in-root"])
def test_cifar10_from_folder_or_tar(tmp_path, legacy, layout):
    files = cifar_files(legacy=legacy)
    if layout == "folder":
        folder = tmp_path / "cifar10" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name, (raw, _, _) in files.items():
            (folder / name).write_bytes(raw)
    else:
        where = tmp_path / "cifar10" if layout == "tar" else tmp_path
        where.mkdir(exist_ok=True)
        (where / "cifar-10-python.tar.gz").write_bytes(cifar_tar_bytes(files))
    for train in (True, False):
        x, y = D.cifar10(root=tmp_path, train=train)
        ex, ey = expected_cifar(files, train)
        assert x.dtype == np.uint8 and x.shape == ex.shape and y.dtype == np.int64
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.target),))


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    _Boom.target = str(tmp_path / "pwned")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Boom(), "labels": []}))
    with pytest.raises(ValueError, match="refusing"):
        D.cifar10(root=tmp_path, train=False)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_bad_batch_shape(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.zeros((2, 100), np.uint8)
    (folder / "test_batch").write_bytes(cifar_batch_bytes(data, [0, 1], legacy=False))
    with pytest.raises(ValueError, match=r"\(2, 100\)"):
        D.cifar10(root=tmp_path, train=False)


# ---- downloads from a throwaway local server -----------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        self.hits.append(self.path)
        kind, _, name = self.path.lstrip("/").partition("/")
        body = self.files.get(name)
        if body is None or kind == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        if kind == "cut":
            # Announce the full length, send half, close: an interrupted transfer.
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.hits = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused, like no network
    return f"http://127.0.0.1:{port}"


def _serve_mnist(handler, monkeypatch) -> dict:
    arrays = {}
    for prefix, n, seed in (("train", 9, 3), ("t10k", 4, 4)):
        x, y = fake_mnist(n, seed)
        arrays[prefix] = (x, y)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", x), (f"{prefix}-labels-idx1-ubyte", y)):
            body = gzip.compress(idx_bytes(arr))
            handler.files[stem + ".gz"] = body
            monkeypatch.setitem(dsmod.CHECKSUMS["mnist"], stem + ".gz",
                                hashlib.sha256(body).hexdigest())
    return arrays


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_download_verifies_caches_and_then_works_offline(tmp_path, server, monkeypatch):
    base, handler = server
    arrays = _serve_mnist(handler, monkeypatch)
    x, y = D.mnist(root=tmp_path, train=True, download=True, url=base + "/ok/")
    np.testing.assert_array_equal(x[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(y, arrays["train"][1])
    assert _files_under(tmp_path) == ["mnist/train-images-idx3-ubyte.gz",
                                      "mnist/train-labels-idx1-ubyte.gz"]
    n_hits = len(handler.hits)
    # Cached: no request, and no server needed.
    x2, _ = D.mnist(root=tmp_path, train=True, download=True, url=_closed_port_url())
    np.testing.assert_array_equal(x2, x)
    assert len(handler.hits) == n_hits


def test_download_falls_back_to_the_next_mirror(tmp_path, server, monkeypatch):
    base, handler = server
    arrays = _serve_mnist(handler, monkeypatch)
    x, _ = D.mnist(root=tmp_path, train=False, download=True,
                   url=[base + "/missing", _closed_port_url(), base + "/ok"])
    np.testing.assert_array_equal(x[:, 0], arrays["t10k"][0])


def test_download_wrong_checksum_leaves_no_file(tmp_path, server, monkeypatch):
    base, handler = server
    _serve_mnist(handler, monkeypatch)
    monkeypatch.setitem(dsmod.CHECKSUMS["mnist"], "t10k-images-idx3-ubyte.gz", "0" * 64)
    with pytest.raises(D.DatasetNotFoundError, match="SHA-256 mismatch") as info:
        D.mnist(root=tmp_path, train=False, download=True, url=base + "/ok")
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert _files_under(tmp_path) == []
    # The direct API raises DownloadError and keeps nothing either.
    with pytest.raises(D.DownloadError, match="SHA-256 mismatch"):
        D.download_file(base + "/ok/t10k-labels-idx1-ubyte.gz", tmp_path / "f.gz", "ab" * 32)
    assert _files_under(tmp_path) == []


def test_download_interrupted_transfer_leaves_no_file(tmp_path, server, monkeypatch):
    base, handler = server
    _serve_mnist(handler, monkeypatch)
    with pytest.raises(D.DatasetNotFoundError, match="interrupted") as info:
        D.mnist(root=tmp_path, train=True, download=True, url=base + "/cut")
    assert "received" in str(info.value)
    assert _files_under(tmp_path) == []
    # Even without a checksum to catch it, a short transfer is refused.
    with pytest.raises(D.DownloadError, match="interrupted"):
        D.download_file(base + "/cut/t10k-images-idx3-ubyte.gz", tmp_path / "f.gz", None)
    assert _files_under(tmp_path) == []


def test_download_keeps_an_existing_file_when_the_new_one_is_bad(tmp_path, server, monkeypatch):
    base, handler = server
    _serve_mnist(handler, monkeypatch)
    dest = tmp_path / "keep.gz"
    dest.write_bytes(b"previous")
    with pytest.raises(D.DownloadError):
        D.download_file(base + "/cut/t10k-images-idx3-ubyte.gz", dest, None)
    assert dest.read_bytes() == b"previous" and _files_under(tmp_path) == ["keep.gz"]


def test_no_network_error_says_which_files_go_where(tmp_path):
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.fashion_mnist(root=tmp_path, train=False, download=True, url=_closed_port_url())
    msg = str(info.value)
    assert str(tmp_path / "fashion-mnist") in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "could not download" in msg
    assert _files_under(tmp_path) == []


def test_cifar10_download(tmp_path, server, monkeypatch):
    base, handler = server
    files = cifar_files(n=3)
    body = cifar_tar_bytes(files)
    handler.files["cifar-10-python.tar.gz"] = body
    monkeypatch.setitem(dsmod.CHECKSUMS["cifar10"], "cifar-10-python.tar.gz",
                        hashlib.sha256(body).hexdigest())
    x, y = D.cifar10(root=tmp_path, train=False, download=True, url=base + "/ok")
    ex, ey = expected_cifar(files, train=False)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
    assert _files_under(tmp_path) == ["cifar10/cifar-10-python.tar.gz"]


def test_checksum_table_is_complete():
    for key, files in dsmod.CHECKSUMS.items():
        assert key in dsmod.MIRRORS
        for name, sha in files.items():
            assert len(sha) == 64 and int(sha, 16) >= 0, name
    for key in ("mnist", "fashion-mnist"):
        assert set(dsmod.CHECKSUMS[key]) == {f"{p}-{k}-ubyte.gz" for p in ("train", "t10k")
                                             for k in ("images-idx3", "labels-idx1")}


# ---- the bundled MNIST subset --------------------------------------------------------------

def test_mnist_subset_split():
    xtr, ytr = D.mnist_subset("train")
    xte, yte = D.mnist_subset("test")
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64
    assert np.bincount(ytr).tolist() == [400] * 10
    assert np.bincount(yte).tolist() == [100] * 10
    # Real digits: MNIST's mean intensity is about 0.13 of full scale.
    assert 0.11 < xtr.mean() / 255 < 0.15
    # The two splits share no image, and the order is shuffled across classes.
    train_keys = {hashlib.sha1(im.tobytes()).digest() for im in xtr}
    assert not any(hashlib.sha1(im.tobytes()).digest() in train_keys for im in xte)
    assert len(set(ytr[:20].tolist())) > 5
    x2, y2 = D.mnist_subset("train")
    np.testing.assert_array_equal(x2, xtr)
    np.testing.assert_array_equal(y2, ytr)
    with pytest.raises(ValueError, match="split"):
        D.mnist_subset("val")


def test_mnist_subset_file_matches_the_script():
    """The stored split is what scripts/make_mnist_subset.py draws from the stored labels."""
    spec = importlib.util.spec_from_file_location("make_subset",
                                                  ROOT / "scripts" / "make_mnist_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = ROOT / "minidl" / "data" / "mnist_subset.npz"
    assert path.stat().st_size < 1_500_000
    with np.load(path) as d:
        assert d["images"].shape == (5000, 28, 28) and d["images"].dtype == np.uint8
        assert np.bincount(d["labels"]).tolist() == [500] * 10
        train, test = mod.stratified_split(d["labels"])
        np.testing.assert_array_equal(train, d["train_index"])
        np.testing.assert_array_equal(test, d["test_index"])
        arrays = {k: d[k] for k in ("images", "labels", "train_index", "test_index")}
    # Rewriting the arrays with the script's writer gives a file that loads identically.
    out = Path(__import__("tempfile").mkdtemp()) / "rebuilt.npz"
    mod.write_npz(out, arrays)
    assert mod.same_arrays(out, path)


# ---- synthetic -----------------------------------------------------------------------------

def test_spirals_and_blobs():
    x, y = D.spirals(n_per_class=50, classes=4, noise=0.1, seed=3)
    assert x.shape == (200, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [50] * 4 and np.abs(x).max() < 1.5
    np.testing.assert_array_equal(D.spirals(50, 4, 0.1, 3)[0], x)
    assert not np.array_equal(D.spirals(50, 4, 0.1, 4)[0], x)
    # Radius grows along each arm: the spiral structure, not a blob.
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.min() < 0.05 and r.max() > 0.95
    x, y = D.blobs(n=201, seed=1)
    assert x.shape == (201, 2) and np.bincount(y).tolist() == [101, 100]
    assert ((x.sum(axis=1) > 0) == (y == 1)).mean() > 0.9  # nearly linearly separable
    with pytest.raises(ValueError):
        D.blobs(n=1)


# ---- transforms ----------------------------------------------------------------------------

def _batch(xp, n=5, c=2, h=6, w=7, dtype=np.uint8):
    # Distinct values per (image, channel) position, so a crop identifies its offset.
    base = np.arange(n * c * h * w).reshape(n, c, h, w) % 251
    return xp.asarray(base.astype(dtype))


@given(n=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7), pad=st.integers(0, 3),
       dh=st.integers(0, 3), dw=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_random_crop_matches_a_window_of_the_padded_image(n, h, w, pad, dh, dw, seed):
    x = np.random.default_rng(seed).integers(1, 256, (n, 2, h, w)).astype(np.uint8)
    th, tw = max(1, h + 2 * pad - dh), max(1, w + 2 * pad - dw)
    out = D.RandomCrop((th, tw), padding=pad)(x, rng=np.random.default_rng(seed))
    assert out.shape == (n, 2, th, tw) and out.dtype == np.uint8
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for i in range(n):
        windows = [padded[i, :, a:a + th, b:b + tw] for a in range(h + 2 * pad - th + 1)
                   for b in range(w + 2 * pad - tw + 1)]
        assert any(np.array_equal(out[i], wdw) for wdw in windows)


def test_random_crop_device_seeding_and_coverage(xp):
    x = _batch(xp, n=400, c=1, h=4, w=4)
    t = D.RandomCrop(4, padding=2)
    a = t(x, rng=np.random.default_rng(1))
    b = t(x, rng=np.random.default_rng(1))
    assert type(a) is type(x)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    # Every one of the 5 x 5 offsets occurs: recover each image's offset from the padding.
    xh, ah = to_numpy(x), to_numpy(a)
    padded = np.pad(xh, ((0, 0), (0, 0), (2, 2), (2, 2)))
    seen = set()
    for i in range(len(xh)):
        for oy in range(5):
            for ox in range(5):
                if np.array_equal(padded[i, :, oy:oy + 4, ox:ox + 4], ah[i]):
                    seen.add((oy, ox))
    assert len(seen) == 25
    own = D.RandomCrop(4, padding=2, rng=7)
    np.testing.assert_array_equal(to_numpy(own(x)), to_numpy(D.RandomCrop(4, 2, rng=7)(x)))
    with pytest.raises(ValueError, match="larger than the padded image"):
        D.RandomCrop(9)(x)
    with pytest.raises(ValueError, match="NCHW"):
        D.RandomCrop(2)(xp.zeros((4, 4)))


def test_horizontal_flip(xp):
    x = _batch(xp, n=300)
    out = to_numpy(D.RandomHorizontalFlip(0.3)(x, rng=np.random.default_rng(0)))
    xh = to_numpy(x)
    flipped = np.array([np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, xh)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, xh)])
    assert np.all(flipped ^ kept)
    assert 0.2 < flipped.mean() < 0.4
    np.testing.assert_array_equal(to_numpy(D.RandomHorizontalFlip(1.0)(x)), xh[..., ::-1])
    np.testing.assert_array_equal(to_numpy(D.RandomHorizontalFlip(0.0)(x)), xh)


def test_normalize(xp):
    x = _batch(xp, c=3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    out = D.Normalize(mean, std)(x)
    assert out.dtype == np.float32
    ref = (to_numpy(x) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-5, atol=1e-5)
    x64 = xp.asarray(ref)
    out64 = D.Normalize(0.1, 2.0)(x64)
    assert out64.dtype == np.float64
    np.testing.assert_allclose(to_numpy(out64), (ref - 0.1) / 2.0, rtol=1e-12)
    with pytest.raises(ValueError, match="3 channels"):
        D.Normalize((0.1, 0.2), (1.0, 1.0))(x)
    with pytest.raises(TypeError, match="int32"):
        D.Normalize(0.0, 1.0)(x.astype(np.int32))
    with pytest.raises(ValueError, match="positive"):
        D.Normalize(0.0, 0.0)
    np.testing.assert_allclose(to_numpy(D.ToFloat()(x)), to_numpy(x) / 255.0, rtol=1e-6)


def _rrc_oracle(x, top, left, ch, cw, th, tw, mode):
    """Per-image, per-pixel loop resampling (independent of the vectorised code)."""
    n, c = x.shape[:2]
    out = np.zeros((n, c, th, tw))
    for i in range(n):
        for r in range(th):
            for q in range(tw):
                if mode == "nearest":
                    sy = int((r + 0.5) * ch[i] / th)
                    sx = int((q + 0.5) * cw[i] / tw)
                    out[i, :, r, q] = x[i, :, top[i] + sy, left[i] + sx]
                    continue
                fy = min(max((r + 0.5) * ch[i] / th - 0.5, 0.0), ch[i] - 1)
                fx = min(max((q + 0.5) * cw[i] / tw - 0.5, 0.0), cw[i] - 1)
                y0, x0 = int(fy), int(fx)
                y1, x1 = min(y0 + 1, ch[i] - 1), min(x0 + 1, cw[i] - 1)
                a, b = fy - y0, fx - x0
                p = x[i, :, top[i]:top[i] + ch[i], left[i]:left[i] + cw[i]].astype(np.float64)
                out[i, :, r, q] = ((1 - a) * (1 - b) * p[:, y0, x0] + (1 - a) * b * p[:, y0, x1]
                                   + a * (1 - b) * p[:, y1, x0] + a * b * p[:, y1, x1])
    return out


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_random_resized_crop_lite_against_loop_oracle(xp, mode):
    x = xp.asarray(np.random.default_rng(0).random((6, 2, 9, 11)))
    t = D.RandomResizedCropLite((5, 7), scale=(0.3, 1.0), interpolation=mode)
    out = t(x, rng=np.random.default_rng(5))
    assert out.shape == (6, 2, 5, 7) and out.dtype == x.dtype
    top, left, ch, cw = t.windows(6, 9, 11, np.random.default_rng(5))
    assert np.all(top >= 0) and np.all(top + ch <= 9) and np.all(left + cw <= 11)
    ref = _rrc_oracle(to_numpy(x), top, left, ch, cw, 5, 7, mode)
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-10, atol=1e-12)


def test_random_resized_crop_lite_properties(xp):
    x = _batch(xp, n=3, c=1, h=8, w=8)
    ident = D.RandomResizedCropLite(8, scale=(1, 1), ratio=(1, 1))
    for mode in ("nearest", "bilinear"):
        ident.interpolation = mode
        np.testing.assert_array_equal(to_numpy(ident(x)), to_numpy(x))  # uint8 kept exact
    # Bilinear downsampling reproduces a linear ramp exactly (no edge clamping when the
    # window is larger than the output).
    ramp = xp.asarray(np.broadcast_to(np.arange(16.0), (4, 1, 16, 16)).copy())
    t = D.RandomResizedCropLite(8, scale=(0.5, 0.9), ratio=(1, 1))
    out = to_numpy(t(ramp, rng=np.random.default_rng(2)))
    np.testing.assert_allclose(np.diff(out, n=2, axis=-1), 0, atol=1e-9)
    np.testing.assert_allclose(np.diff(out, axis=-2), 0, atol=1e-12)
    t = D.RandomResizedCropLite(4, scale=(0.25, 0.5))
    _, _, ch, cw = t.windows(2000, 32, 32, np.random.default_rng(0))
    frac = ch * cw / 1024
    assert frac.min() > 0.2 and frac.max() < 0.56 and 0.3 < frac.mean() < 0.45
    with pytest.raises(ValueError, match="interpolation"):
        D.RandomResizedCropLite(4, interpolation="cubic")


def test_ten_crop(xp):
    x = _batch(xp, n=3, c=2, h=7, w=9)
    out = D.TenCrop((4, 5))(x)
    assert out.shape == (10, 3, 2, 4, 5)
    xh, oh = to_numpy(x), to_numpy(out)
    windows = [(0, 0), (0, 4), (3, 0), (3, 4), (1, 2)]
    for k, (a, b) in enumerate(windows):
        crop = xh[:, :, a:a + 4, b:b + 5]
        np.testing.assert_array_equal(oh[k], crop)
        np.testing.assert_array_equal(oh[k + 5], crop[..., ::-1])
    flat = to_numpy(D.TenCrop((4, 5), flatten=True)(x))
    np.testing.assert_array_equal(flat, oh.reshape(30, 2, 4, 5))
    with pytest.raises(ValueError, match="larger than the image"):
        D.TenCrop(8)(x)


def test_compose_passes_one_rng_through(xp):
    x = _batch(xp, n=8, c=3, h=8, w=8)
    t = D.Compose([D.RandomCrop(6, padding=1), D.RandomHorizontalFlip(), D.Normalize(0.5, 0.5)])
    a = to_numpy(t(x, rng=np.random.default_rng(3)))
    b = to_numpy(t(x, rng=np.random.default_rng(3)))
    c = to_numpy(t(x, rng=np.random.default_rng(4)))
    assert a.shape == (8, 3, 6, 6) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ---- DataLoader ----------------------------------------------------------------------------

def _xy(n=23):
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    return x, np.arange(n) % 4


def _epoch_ids(loader):
    return [to_numpy(xb.data)[:, 0].astype(int) // 3 for xb, _ in loader]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_covers_the_dataset_once_per_epoch(shuffle, drop_last):
    x, y = _xy(23)
    loader = D.DataLoader(D.TensorDataset(x, y), batch_size=5, shuffle=shuffle, seed=1,
                          drop_last=drop_last)
    assert len(loader) == (4 if drop_last else 5)
    ids = _epoch_ids(loader)
    assert len(ids) == len(loader)
    assert [len(b) for b in ids] == ([5] * 4 if drop_last else [5, 5, 5, 5, 3])
    flat = np.concatenate(ids)
    assert len(set(flat.tolist())) == len(flat)
    if not shuffle:
        np.testing.assert_array_equal(flat, np.arange(len(flat)))
    elif not drop_last:
        assert sorted(flat.tolist()) == list(range(23)) and not np.array_equal(flat, np.arange(23))


def test_loader_seed_reproducible_and_epochs_reshuffle():
    x, y = _xy(40)
    a = D.DataLoader((x, y), batch_size=8, shuffle=True, seed=5)
    b = D.DataLoader((x, y), batch_size=8, shuffle=True, seed=5)
    ea0, ea1 = np.concatenate(_epoch_ids(a)), np.concatenate(_epoch_ids(a))
    eb0 = np.concatenate(_epoch_ids(b))
    np.testing.assert_array_equal(ea0, eb0)
    assert not np.array_equal(ea0, ea1)
    np.testing.assert_array_equal(ea1, a.order(1))
    c = D.DataLoader((x, y), batch_size=8, shuffle=True, seed=6)
    assert not np.array_equal(np.concatenate(_epoch_ids(c)), ea0)
    assert D.DataLoader((x, y), shuffle=True).seed != D.DataLoader((x, y), shuffle=True).seed


def test_loader_dtypes_and_device(device):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)
    lab = rng.integers(0, 10, 10).astype(np.uint8)
    f64 = rng.random((10, 2))
    loader = D.DataLoader(D.TensorDataset(img, lab, f64), batch_size=4, device=device)
    xb, yb, fb = next(iter(loader))
    assert all(isinstance(t, md.Tensor) and t.device == device for t in (xb, yb, fb))
    assert xb.dtype == np.float32 and yb.dtype == np.int64 and fb.dtype == np.float64
    np.testing.assert_allclose(to_numpy(xb.data), img[:4] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(yb.data), lab[:4])
    assert not xb.requires_grad


def test_loader_default_device_follows_minidl(monkeypatch):
    x, y = _xy(4)
    with md.device("cpu"):
        xb, _ = next(iter(D.DataLoader((x, y), batch_size=2)))
    assert xb.device == "cpu"


def test_loader_dataset_on_device(device, xp):
    x, y = _xy(12)
    loader = D.DataLoader(D.TensorDataset(xp.asarray(x), xp.asarray(y)), batch_size=5,
                          shuffle=True, seed=0, device=device)
    ids = np.concatenate(_epoch_ids(loader))
    assert sorted(ids.tolist()) == list(range(12))


def test_loader_gathers_without_per_item_access():
    class NoItems(D.TensorDataset):
        def __getitem__(self, i):
            raise AssertionError("per-item access in the array-backed path")

    x, y = _xy(20)
    loader = D.DataLoader(NoItems(x, y), batch_size=6, shuffle=True, seed=0, prefetch=2)
    assert sum(len(b) for b in _epoch_ids(loader)) == 20


def test_loader_generic_dataset_matches_tensor_dataset():
    x, y = _xy(11)

    class Items(D.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], int(y[i])

    a = [(to_numpy(p.data), to_numpy(q.data)) for p, q in
         D.DataLoader(Items(), batch_size=4, shuffle=True, seed=2)]
    b = [(to_numpy(p.data), to_numpy(q.data)) for p, q in
         D.DataLoader((x, y), batch_size=4, shuffle=True, seed=2)]
    for (pa, qa), (pb, qb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(qa, qb)
        assert qa.dtype == np.int64


def _run(loader, n_batches=None):
    out = []
    for i, (xb, yb) in enumerate(loader):
        if n_batches is not None and i >= n_batches:
            break
        out.append((to_numpy(xb.data), to_numpy(yb.data)))
    return out


def _images(n=30):
    x = np.random.default_rng(0).integers(0, 256, (n, 1, 6, 6), dtype=np.uint8)
    return x, np.arange(n) % 10


@pytest.mark.parametrize("prefetch", [0, 3])
def test_loader_prefetch_gives_the_same_batches(prefetch):
    x, y = _images()
    t = D.Compose([D.RandomCrop(6, padding=2), D.RandomHorizontalFlip()])
    ref = D.DataLoader((x, y), batch_size=7, shuffle=True, seed=9, transform=t)
    got = D.DataLoader((x, y), batch_size=7, shuffle=True, seed=9, transform=t,
                       prefetch=prefetch)
    for _ in range(2):
        for (a, b), (c, d) in zip(_run(ref), _run(got), strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("stop_after", [0, 3, 5])
def test_loader_resume_continues_exactly(prefetch, stop_after):
    x, y = _images()
    t = D.RandomCrop(6, padding=1)

    def make():
        return D.DataLoader((x, y), batch_size=6, shuffle=True, seed=4, transform=t,
                            prefetch=prefetch)

    full = make()
    reference = _run(full) + _run(full) + _run(full)

    first = make()
    seen = _run(first)  # epoch 0 complete
    it = iter(first)
    for _ in range(stop_after):  # part of epoch 1, as a Trainer would consume it
        xb, yb = next(it)
        seen.append((to_numpy(xb.data), to_numpy(yb.data)))
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batch"] == stop_after
    del it

    resumed = make()
    resumed.load_state_dict(dict(state))
    seen += _run(resumed) + _run(resumed)
    for (a, b), (c, d) in zip(seen, reference, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_loader_state_between_epochs_and_after_break():
    x, y = _xy(10)
    loader = D.DataLoader((x, y), batch_size=3, shuffle=True, seed=0)
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 0
    _run(loader)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)
    _run(loader, n_batches=1)  # abandoned: the next iter starts a fresh epoch
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (2, 0)
    other = D.DataLoader((x, y), batch_size=4, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="batch size"):
        other.load_state_dict({**loader.state_dict(), "batch": 1})
    with pytest.raises(ValueError, match="10 samples"):
        D.DataLoader(_xy(11), batch_size=3).load_state_dict(
            {**loader.state_dict(), "shuffle": 0})
    with pytest.raises(ValueError, match="lacks"):
        loader.load_state_dict({"seed": 1})


def test_prefetch_thread_stops_when_abandoned_and_forwards_errors():
    x, y = _images(200)
    before = {t for t in threading.enumerate() if t.name == "minidl-prefetch"}
    loader = D.DataLoader((x, y), batch_size=2, prefetch=2)
    _run(loader, n_batches=2)
    deadline = time.time() + 5
    while time.time() < deadline:
        alive = {t for t in threading.enumerate() if t.name == "minidl-prefetch"} - before
        if not alive:
            break
        time.sleep(0.02)
    assert not alive

    class Broken(D.TensorDataset):
        def get_batch(self, idx):
            if idx[0] >= 4:
                raise KeyError("corrupt record 4")
            return super().get_batch(idx)

    it = iter(D.DataLoader(Broken(x, y), batch_size=2, prefetch=3))
    next(it), next(it)
    with pytest.raises(KeyError, match="corrupt record 4"):
        next(it)


def test_loader_argument_errors():
    x, y = _xy(5)
    with pytest.raises(ValueError, match="batch_size"):
        D.DataLoader((x, y), batch_size=0)
    with pytest.raises(ValueError, match="prefetch"):
        D.DataLoader((x, y), prefetch=-1)
    with pytest.raises(ValueError, match="seed"):
        D.DataLoader((x, y), seed=-3)
    with pytest.raises(ValueError, match=r"\(5, 3\), \(4,\)"):
        D.TensorDataset(x, y[:4])
    assert len(D.DataLoader((x[:0], y[:0]), batch_size=2)) == 0
    assert _run(D.DataLoader((x[:0], y[:0]), batch_size=2)) == []


def test_loader_accepts_a_plain_function_as_transform(device):
    x, y = _images(6)
    loader = D.DataLoader((x, y), batch_size=3, device=device,
                          transform=lambda a: a.astype(np.float64) - 128.0)
    xb, _ = next(iter(loader))
    assert xb.dtype == np.float64 and xb.device == device
    np.testing.assert_array_equal(to_numpy(xb.data), x[:3] - 128.0)


def test_loader_with_ten_crop_transform():
    x, y = _images(4)
    loader = D.DataLoader((x, y), batch_size=4, transform=D.Compose([
        D.TenCrop(4, flatten=True), D.Normalize(0.5, 0.5)]))
    xb, yb = next(iter(loader))
    assert xb.shape == (40, 1, 4, 4) and yb.shape == (4,) and xb.dtype == np.float32


@pytest.mark.parametrize("make, match", [
    (lambda: D.RandomCrop(0), r"RandomCrop: size must be a positive int or pair, got \(0, 0\)"),
    (lambda: D.RandomCrop(4, padding=-1), r"RandomCrop: padding must be a non-negative int"),
    (lambda: D.RandomCrop((4, 4, 4)), r"RandomCrop: size must be a positive int or pair"),
])
def test_transform_sizes_are_checked_by_the_shared_validators(make, match):
    with pytest.raises(ValueError, match=match):
        make()
