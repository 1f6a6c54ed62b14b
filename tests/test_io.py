"""minidl.io: npz/safetensors round trips, nesting, atomic writes, corrupt files, torch import."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import minidl as md
import minidl.io as mio
import minidl.nn as nn
import minidl.optim as optim


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k].numpy(), sb[k].numpy())


def test_module_round_trip(tmp_path):
    md.manual_seed(0)
    net = _net()
    net(md.randn(8, 3))              # move BN running stats and the batch counter
    mio.save(net, tmp_path / "net.npz")
    other = _net()
    other.load_state_dict(mio.load(tmp_path / "net.npz"))
    _same_state(net, other)
    assert other[1].num_batches_tracked.dtype == np.int64
    assert int(other[1].num_batches_tracked.item()) == 1
    # a plain state dict file is an ordinary npz with dotted keys
    with np.load(tmp_path / "net.npz") as z:
        assert "0.weight" in z.files and "1.running_var" in z.files


def test_nested_checkpoint_with_optimizer_and_plain_values(tmp_path):
    md.manual_seed(0)
    net = _net()
    opt = optim.Adam(net.parameters(), lr=3e-3, betas=(0.8, 0.99))
    net(md.randn(8, 3)).sum().backward()
    opt.step()
    obj = {"model": net.state_dict(), "optimizer": opt, "epoch": 7, "best": 0.25,
           "name": "run-1", "flags": [True, None], "shape": (2, 3),
           "history": {"loss": [1.0, 0.5]}, "scalar": np.float32(1.5),
           "rng": md.tensor([1, 2, 3])}
    mio.save(obj, tmp_path / "ck.npz")
    back = mio.load(tmp_path / "ck.npz")
    assert back["epoch"] == 7 and back["best"] == 0.25 and back["name"] == "run-1"
    assert back["flags"] == [True, None] and back["shape"] == (2, 3)
    assert back["history"] == {"loss": [1.0, 0.5]} and back["scalar"] == 1.5
    np.testing.assert_array_equal(back["rng"], [1, 2, 3])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99)
    assert set(back["optimizer"]["state"]) == set(range(6))    # int keys survive
    opt2 = optim.Adam(net.parameters(), lr=1.0)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["lr"] == 3e-3
    for p in net.parameters():
        np.testing.assert_array_equal(opt2.state[p]["exp_avg"], opt.state[p]["exp_avg"])
        assert opt2.state[p]["step"] == 1


def test_keys_with_dots_do_not_collide(tmp_path):
    obj = {"a.b": np.zeros(1), "a": {"b": np.ones(1)}}
    mio.save(obj, tmp_path / "x.npz")
    back = mio.load(tmp_path / "x.npz")
    assert back["a.b"][0] == 0 and back["a"]["b"][0] == 1


def test_exact_path_is_used(tmp_path):
    mio.save({"w": np.arange(3)}, tmp_path / "weights.ckpt")
    assert (tmp_path / "weights.ckpt").exists() and not (tmp_path / "weights.ckpt.npz").exists()
    np.testing.assert_array_equal(mio.load(tmp_path / "weights.ckpt")["w"], [0, 1, 2])


def test_compressed(tmp_path):
    mio.save({"w": np.zeros(10000)}, tmp_path / "c.npz", compress=True)
    assert os.path.getsize(tmp_path / "c.npz") < 10000
    assert mio.load(tmp_path / "c.npz")["w"].shape == (10000,)


def test_plain_numpy_npz_loads_flat(tmp_path):
    np.savez(tmp_path / "plain.npz", weight=np.ones(2), bias=np.zeros(1))
    back = mio.load(tmp_path / "plain.npz")
    assert set(back) == {"weight", "bias"}


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    mio.save({"w": np.ones(3)}, path)

    def boom(*a, **k):
        raise KeyboardInterrupt("interrupted mid-write")
    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(KeyboardInterrupt):
        mio.save({"w": np.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(mio.load(path)["w"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]   # no temp files left


def test_unsupported_objects_raise(tmp_path):
    with pytest.raises(TypeError, match="cannot store a object at x"):
        mio.save({"x": object()}, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_file_raises_clear_error_and_model_untouched(tmp_path, damage):
    md.manual_seed(0)
    net = _net()
    path = tmp_path / "net.npz"
    mio.save(net, path)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:  # flip bytes inside the first stored array: the zip CRC check catches it
        pos = raw.index(b"NUMPY") + 200
        path.write_bytes(raw[:pos] + bytes(b ^ 0xFF for b in raw[pos:pos + 16]) + raw[pos + 16:])
    other = _net()
    before = {k: v.numpy().copy() for k, v in other.state_dict().items()}
    with pytest.raises(mio.CheckpointError, match="net.npz"):
        other.load_state_dict(mio.load(path))
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_mismatched_checkpoint_leaves_model_untouched(tmp_path):
    """Only the last entry (the bias) mismatches, so an early weight copy would show."""
    source = nn.Linear(3, 4)
    sd = {"weight": source.weight.numpy() + 1, "bias": np.zeros(5, np.float32)}
    mio.save(sd, tmp_path / "lin.npz")
    target = nn.Linear(3, 4)
    assert list(target.state_dict()) == ["weight", "bias"]
    w, b = target.weight.numpy().copy(), target.bias.numpy().copy()
    with pytest.raises(nn.StateDictError, match=r"bias: checkpoint \(5,\) vs model \(4,\)"):
        target.load_state_dict(mio.load(tmp_path / "lin.npz"))
    np.testing.assert_array_equal(target.weight.numpy(), w)
    np.testing.assert_array_equal(target.bias.numpy(), b)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        mio.load("/nonexistent/dir/x.npz")


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    md.manual_seed(0)
    net = _net()
    mio.save({"model": net, "epoch": 3}, tmp_path / "net.safetensors")
    back = mio.load(tmp_path / "net.safetensors")
    assert back["epoch"] == 3
    other = _net()
    other.load_state_dict(back["model"])
    _same_state(net, other)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(mio.CheckpointError, match="bad.safetensors"):
        mio.load(tmp_path / "bad.safetensors")



def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    import json
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + data


def test_read_safetensors_widens_bfloat16_and_keeps_metadata(tmp_path):
    values = np.array([1.5, -2.0, 3.25], np.float32)  # exact in bfloat16
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    f32 = np.arange(4, dtype="<f4").tobytes()
    header = {"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
              "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [6, 22]},
              "__metadata__": {"note": "hi"}}
    (tmp_path / "w.safetensors").write_bytes(_safetensors_bytes(header, bf16 + f32))
    arrays, meta = mio.read_safetensors(tmp_path / "w.safetensors")
    assert arrays["a"].dtype == np.float32 and np.array_equal(arrays["a"], values)
    assert np.array_equal(arrays["b"], np.arange(4, dtype=np.float32).reshape(2, 2))
    assert meta == {"note": "hi"}


@pytest.mark.parametrize("entry, match", [
    ({"dtype": "F32", "shape": [2]}, "damaged header entry"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 99]}, "lies outside the file"),
    ({"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}, "unsupported dtype Q7"),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, "2 values but shape"),
])
def test_read_safetensors_damaged_entries_name_file_and_tensor(tmp_path, entry, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_safetensors_bytes({"w": entry}, bytes(8)))
    with pytest.raises(mio.CheckpointError, match=match) as e:
        mio.load(path)
    assert "bad.safetensors" in str(e.value) and "'w'" in str(e.value)

@pytest.mark.torch
def test_load_torch_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                               torch.nn.Linear(4, 2))
    tnet.train()
    tnet(torch.randn(8, 3))
    tnet.eval()
    net = _net().eval()
    mio.load_torch_state_dict(net, tnet.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with md.no_grad():
        ours = net(md.tensor(x)).numpy()
    np.testing.assert_allclose(ours, tnet(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    torch.save(tnet.state_dict(), tmp_path / "w.pth")
    net2 = _net().eval()
    mio.load_torch_state_dict(net2, tmp_path / "w.pth")
    _same_state(net, net2)


def test_load_torch_state_dict_reads_minidl_checkpoints_too(tmp_path):
    md.manual_seed(0)
    source = _net()
    mio.save(source, tmp_path / "net.npz")
    mio.save({"model": source, "epoch": 3}, tmp_path / "ckpt.npz")
    for path in (tmp_path / "net.npz", tmp_path / "ckpt.npz"):
        target = _net()
        assert mio.load_torch_state_dict(target, path) == ([], [])
        _same_state(source, target)


@pytest.mark.parametrize("reader", [mio.load, lambda p: mio.load_torch_state_dict(_net(), p)])
def test_damaged_or_foreign_npz_files_raise_checkpoint_errors(tmp_path, reader):
    md.manual_seed(0)
    mio.save(_net(), tmp_path / "net.npz")
    raw = (tmp_path / "net.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with open(tmp_path / "one.npz", "wb") as f:   # a lone .npy under an .npz name
        np.save(f, np.zeros(3))
    with pytest.raises(mio.CheckpointError, match="cut.npz is not a readable .npz"):
        reader(tmp_path / "cut.npz")
    with pytest.raises(mio.CheckpointError, match="one.npz holds a single array"):
        reader(tmp_path / "one.npz")


def _save_forever(path, ready, writing):
    """A child process's loop: save a model with a version stamp, again and again;
    ``writing`` is set whenever an array is being written (the save is under way)."""
    real = np.lib.format.write_array

    def write_array(*a, **k):
        writing.set()
        return real(*a, **k)
    np.lib.format.write_array = write_array
    net = nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)])   # 2 MB of weights
    k = 0
    while True:
        k += 1
        mio.save({"model": net, "version": k, "check": np.full(1000, k)}, path)
        ready.set()


def test_sigkill_during_saves_keeps_the_last_good_file_and_the_next_save_cleans_up(tmp_path):
    """10 SIGKILLs of a saving loop, every other one surely mid-save and the rest at random
    moments: the file always loads whole, and after the next save no temporary file is
    left."""
    import multiprocessing
    import random
    import signal

    ctx = multiprocessing.get_context("fork")   # forked: no interpreter start per kill
    path = tmp_path / "ck.npz"
    rng = random.Random(0)
    for i in range(10):
        ready, writing = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_save_forever, args=(path, ready, writing), daemon=True)
        proc.start()
        assert ready.wait(timeout=60)                 # one save done: the file exists
        if i % 2:
            writing.clear()
            assert writing.wait(timeout=60)           # a later save is writing now
        else:
            time.sleep(rng.uniform(0.0, 0.03))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        assert proc.exitcode == -signal.SIGKILL
        back = mio.load(path)
        assert back["version"] >= 1 and (back["check"] == back["version"]).all()
    leaked = [p.name for p in tmp_path.iterdir() if p.name != "ck.npz"]
    assert leaked == [f".ck.npz.minidl-tmp-{proc.pid}"]          # the last kill, mid-save...
    mio.save({"w": np.ones(2)}, tmp_path / "other.npz")           # ...until the next save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz", "other.npz"]


def test_a_live_process_temporary_file_is_kept(tmp_path):
    alive = tmp_path / f".ck.npz.minidl-tmp-{os.getpid()}"
    dead = tmp_path / ".ck.npz.minidl-tmp-999999999"
    alive.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert mio.remove_stale_temporaries(tmp_path) == [dead.name]
    assert alive.exists() and not dead.exists()
