"""minidl.distributed in one process: the sampler, buckets, SyncBatchNorm's Functions, the
world of one process, the launcher's command line and the NCCL pieces that need no GPU."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import minidl as md
import minidl.distributed as dist
import minidl.functional as F
from minidl import nn, optim
from minidl.data import DataLoader
from minidl.distributed.buckets import Bucket
from minidl.distributed.launcher import _abort_on_exception, mpiexec_command
from minidl.distributed.nccl import exchange_unique_id
from minidl.distributed.sync_bn import SyncBatchNormFunction
from minidl.train import distributed_hooks


# ---- DistributedSampler ---------------------------------------------------------------------
@pytest.mark.parametrize("n, world", [(10, 3), (12, 4), (7, 2), (2, 3)])
def test_sampler_shards_are_disjoint_and_padding_is_as_stated(n, world):
    shards = [dist.DistributedSampler(range(n), world, r, seed=5, pad=False).indices()
              for r in range(world)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))   # disjoint, complete
    padded = [dist.DistributedSampler(range(n), world, r, seed=5).indices() for r in range(world)]
    assert len({len(s) for s in padded}) == 1 and len(padded[0]) == -(-n // world)
    flat = np.concatenate(padded)
    extra = len(flat) - n
    order = np.random.default_rng([5, 0]).permutation(n)
    assert sorted(flat.tolist()) == sorted(order.tolist() + np.resize(order, extra).tolist())
    dropped = [dist.DistributedSampler(range(n), world, r, drop_last=True).indices()
               for r in range(world)]
    assert all(len(s) == n // world for s in dropped)
    assert len(set(np.concatenate(dropped).tolist())) == n // world * world


def test_sampler_global_batches_do_not_depend_on_the_rank_count():
    """Local batch j of every rank together is the one-process batch j of size b * world."""
    n, global_batch = 50, 12
    one = dist.DistributedSampler(range(n), 1, 0, seed=9, pad=False)
    one.set_epoch(3)
    expected = [sorted(one.indices()[i:i + global_batch].tolist())
                for i in range(0, n, global_batch)]
    for world in (2, 3, 4):
        shards = []
        for r in range(world):
            s = dist.DistributedSampler(range(n), world, r, seed=9, pad=False)
            s.set_epoch(3)
            shards.append(s.indices())
        b = global_batch // world
        got = [sorted(np.concatenate([s[j * b:(j + 1) * b] for s in shards]).tolist())
               for j in range(len(expected))]
        assert got == expected


def test_sampler_epochs_reshuffle_and_repeat():
    s = dist.DistributedSampler(range(20), 2, 1, seed=1)
    first = s.indices()
    s.set_epoch(1)
    assert not np.array_equal(first, s.indices())
    s.set_epoch(0)
    assert np.array_equal(first, s.indices())
    assert list(dist.DistributedSampler(range(5), 2, 0, shuffle=False)) == [0, 2, 4]


def test_dataloader_sets_the_sampler_epoch_itself():
    x = np.arange(20, dtype=np.float32).reshape(20, 1)
    sampler = dist.DistributedSampler(range(20), 2, 0, seed=2)
    loader = DataLoader((x,), batch_size=5, sampler=sampler)
    assert len(loader) == 2
    epochs = [np.concatenate([b[0].numpy().ravel() for b in loader]) for _ in range(2)]
    assert sampler.epoch == 1 and not np.array_equal(epochs[0], epochs[1])
    sampler.set_epoch(0)
    assert np.array_equal(epochs[0], x[sampler.indices()].ravel())
    loader.set_epoch(1)           # what the Trainer calls
    assert np.array_equal(np.concatenate([b[0].numpy().ravel() for b in loader]), epochs[1])


def test_sampler_errors():
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader((np.zeros((4, 1)),), sampler=dist.DistributedSampler(range(4), 1, 0),
                   shuffle=True)
    with pytest.raises(ValueError, match="different numbers of batches"):
        DataLoader((np.zeros((9, 1)),), batch_size=2,
                   sampler=dist.DistributedSampler(range(9), 4, 0, pad=False))
    with pytest.raises(ValueError, match="rank must be in"):
        dist.DistributedSampler(range(4), 2, 2)


def test_sampler_gives_each_rank_its_own_augmentation_stream():
    assert dist.DistributedSampler(range(4), 1, 0).rng_stream == ()
    loaders = [DataLoader((np.zeros((8, 1)),), batch_size=2,
                          sampler=dist.DistributedSampler(range(8), 2, r)) for r in range(2)]
    draws = [ld.batch_rng(0, 0).random(3) for ld in loaders]
    assert not np.array_equal(draws[0], draws[1])
    plain = DataLoader((np.zeros((8, 1)),), batch_size=2, seed=loaders[0].seed)
    one = DataLoader((np.zeros((8, 1)),), batch_size=2, seed=loaders[0].seed,
                     sampler=dist.DistributedSampler(range(8), 1, 0))
    assert np.array_equal(plain.batch_rng(0, 0).random(3), one.batch_rng(0, 0).random(3))


# ---- buckets ----------------------------------------------------------------------------------
def test_bucket_packs_weighted_gradients_and_flags_and_unpacks_in_place():
    a = nn.Parameter(np.zeros((2, 3), np.float32))
    b = nn.Parameter(np.zeros(4, np.float32))
    # a channels-last gradient: unpacking must keep its layout and values
    g = np.arange(6, dtype=np.float32).reshape(2, 3)
    a.grad = md.Tensor(np.asfortranarray(g))
    bucket = Bucket([a, b])
    buf = bucket.pack(0.25)
    assert np.array_equal(buf[:6], g.ravel() * np.float32(0.25))
    assert np.array_equal(buf[6:10], np.zeros(4)) and buf[10:].tolist() == [1, 0]
    buf[:6] = np.arange(6, 12)
    grad_before = a.grad.data
    bucket.unpack()
    assert a.grad.data is grad_before and a.grad.data.flags.f_contiguous
    assert np.array_equal(a.grad.data, np.arange(6, 12).reshape(2, 3))
    assert b.grad is None                        # no rank had a gradient for it
    buf[11] = 2                                  # two ranks had one: now it gets the sum
    bucket.unpack()
    assert b.grad is not None and np.array_equal(b.grad.numpy(), np.zeros(4))


# ---- DDP and the world of one process --------------------------------------------------------
def test_one_process_world_is_a_no_op():
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main_process()) == (0, 1, True)
    x = np.array([1.5, -2.0])
    assert dist.all_reduce(x) is x and x.tolist() == [1.5, -2.0]
    t = md.tensor([3.0])
    assert dist.all_reduce(t, op="max") is t
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(x, op="avg")
    dist.barrier()
    assert dist.rank_seed(7) == 7
    assert dist.rank_seed(7, 0, 2) != dist.rank_seed(7, 1, 2) == dist.rank_seed(7, 1, 2)
    assert distributed_hooks.average_over_ranks({"loss": 0.5}, 3) == {"loss": 0.5}
    assert distributed_hooks.extra_state() == {}


def test_ddp_of_one_process_changes_nothing():
    def run(wrap: bool) -> list[np.ndarray]:
        md.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        net = dist.DistributedDataParallel(model) if wrap else model
        opt = optim.SGD(net.parameters(), lr=0.1)
        rng = np.random.default_rng(0)
        for _ in range(3):
            x, y = rng.standard_normal((5, 3)).astype(np.float32), rng.integers(0, 2, 5)
            opt.zero_grad()
            if wrap:
                with net.no_sync():
                    F.cross_entropy(net(md.tensor(x)), md.tensor(y)).backward()
            else:
                F.cross_entropy(net(md.tensor(x)), md.tensor(y)).backward()
            opt.step()
        return [p.numpy() for p in model.parameters()]

    for a, b in zip(run(True), run(False)):
        assert np.array_equal(a, b)
    ddp = dist.DistributedDataParallel(nn.Linear(2, 2))
    assert list(ddp.state_dict()) == ["module.weight", "module.bias"]


def test_ddp_errors():
    with pytest.raises(TypeError, match="expected a minidl.nn.Module"):
        dist.DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="bucket_mb must be > 0"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_mb=0)


def test_broadcast_state_and_parameters_of_one_process_keep_everything():
    model = nn.Linear(2, 2)
    before = [p.numpy().copy() for p in model.parameters()]
    dist.broadcast_parameters(model)
    opt = optim.Adam(model.parameters())
    dist.broadcast_state(opt)
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(before, model.parameters()))


# ---- SyncBatchNorm ----------------------------------------------------------------------------
def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def test_sync_batchnorm_function_is_batch_norm_in_one_process():
    rng = np.random.default_rng(0)
    x = _channels_last(rng.standard_normal((4, 3, 5, 5)) * 3 + 1)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    fn = SyncBatchNormFunction(dist.SingleProcess(), 1e-5)
    y = fn(md.tensor(x), md.tensor(gamma), md.tensor(beta))
    ref = F.batch_norm(md.tensor(x), None, None, md.tensor(gamma), md.tensor(beta), training=True)
    assert np.abs(y.numpy() - ref.numpy()).max() < 1e-12
    assert y.data.strides[1] == y.data.itemsize        # channels-last stays channels-last
    assert np.abs(fn.var - x.var(axis=(0, 2, 3))).max() < 1e-12


def test_sync_batchnorm_function_gradcheck_and_no_double_backward():
    rng = np.random.default_rng(1)
    x = md.tensor(_channels_last(rng.standard_normal((3, 2, 3, 3))), requires_grad=True)
    g = md.tensor(rng.standard_normal(2) + 1.5, requires_grad=True)
    b = md.tensor(rng.standard_normal(2), requires_grad=True)
    w = md.tensor(rng.standard_normal((3, 2, 3, 3)))

    def f(x, g, b):
        return (SyncBatchNormFunction(dist.SingleProcess(), 1e-5)(x, g, b) * w).sum()

    assert md.gradcheck(f, x, g, b)
    out = f(x, g, b)
    (gx,) = md.autograd.grad(out, [x], create_graph=True)
    with pytest.raises(RuntimeError, match="not supported"):
        gx.sum().backward()


def test_sync_batchnorm_module_is_batchnorm2d_in_one_process():
    rng = np.random.default_rng(2)
    x = md.tensor(rng.standard_normal((4, 3, 4, 4)).astype(np.float32))
    md.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    sync = dist.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    assert isinstance(sync, dist.SyncBatchNorm)
    for _ in range(2):
        assert np.array_equal(plain(x).numpy(), sync(x).numpy())
    assert np.array_equal(plain.running_var.numpy(), sync.running_var.numpy())
    sync.eval()
    plain.eval()
    assert np.array_equal(plain(x).numpy(), sync(x).numpy())


def test_convert_sync_batchnorm_shares_parameters_and_buffers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2),
                          nn.Sequential(nn.Flatten(), nn.BatchNorm1d(8)))
    bn, bn1 = model[1], model[2][1]
    opt = optim.SGD(model.parameters(), lr=0.1)
    converted = dist.convert_sync_batchnorm(model)
    assert converted is model
    assert isinstance(model[1], dist.SyncBatchNorm) and isinstance(model[2][1], dist.SyncBatchNorm)
    assert model[1].weight is bn.weight and model[1].running_mean is bn.running_mean
    assert model[2][1].bias is bn1.bias
    assert list(model.state_dict()) == list(dict.fromkeys(model.state_dict()))
    assert any(p is model[1].weight for g in opt.param_groups for p in g["params"])


# ---- NCCL pieces that need no GPU -----------------------------------------------------------
def test_unique_id_exchange_of_one_process_is_rank_zeros_id():
    made = []
    uid = exchange_unique_id(dist.SingleProcess(), lambda: made.append(1) or b"\x01\x02")
    assert uid == b"\x01\x02" and made == [1]


@pytest.mark.gpu
def test_nccl_communicator_on_one_gpu():
    """One GPU hosts one NCCL rank: a world of one checks the calls (a multi-rank NCCL test
    needs one GPU per rank)."""
    from minidl.backend import xp_for
    from minidl.distributed.nccl import NCCLCommunicator, nccl_version

    if nccl_version() is None:
        pytest.skip("CuPy has no NCCL (pip install nvidia-nccl-cu12)")
    cp = xp_for("cuda")
    comm = NCCLCommunicator(dist.SingleProcess(), cp)
    a = cp.arange(6, dtype=cp.float32)
    comm.iallreduce(a).wait()
    comm.broadcast(a, 0)
    assert cp.asnumpy(a).tolist() == list(range(6))


# ---- the launcher -----------------------------------------------------------------------------
def test_launch_runs_python_under_mpi4py_for_abort_on_exception():
    assert _abort_on_exception(["python3", "t.py", "-x"]) == ["python3", "-m", "mpi4py", "t.py",
                                                              "-x"]
    assert _abort_on_exception(["python", "-m", "mpi4py", "t.py"]) == ["python", "-m", "mpi4py",
                                                                     "t.py"]
    assert _abort_on_exception(["minidl", "train"])[1:] == ["-m", "mpi4py", "-m", "minidl.cli",
                                                            "train"]
    assert _abort_on_exception(["./run.sh"]) == ["./run.sh"]


def _fake_mpiexec(tmp_path, banner: str) -> str:
    exe = tmp_path / "mpiexec"
    exe.write_text(f"#!/bin/sh\necho '{banner}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_launch_flags_for_open_mpi_and_mpich(tmp_path):
    cores = len(os.sched_getaffinity(0))
    ompi = _fake_mpiexec(tmp_path, "mpiexec (Open MPI) 5.0.5")
    argv, env = mpiexec_command(cores + 1, ["python", "t.py"], mpiexec=ompi, timeout=9)
    assert "--oversubscribe" in argv and ["--bind-to", "none"] == argv[argv.index("--bind-to"):
                                                                      argv.index("--bind-to") + 2]
    assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)
    assert env == {"MINIDL_NUM_THREADS": "1", "MINIDL_DIST_TIMEOUT": "9"}
    assert "MINIDL_DIST_TIMEOUT=9" in argv
    (tmp_path / "h").mkdir()
    hydra = _fake_mpiexec(tmp_path / "h", "HYDRA build details:")
    argv, env = mpiexec_command(1, ["python", "t.py"], mpiexec=hydra)
    assert argv[:3] == [hydra, "-n", "1"] and "--oversubscribe" not in argv
    assert argv[argv.index("-bind-to") + 1] == ("core" if cores == 1 else f"core:{cores}")
    assert env["MINIDL_NUM_THREADS"] == str(cores)
    with pytest.raises(ValueError, match="no command"):
        mpiexec_command(2, [], mpiexec=hydra)


def test_launch_prints_the_plain_mpiexec_line(tmp_path):
    if not dist.mpi_available()[0]:
        pytest.skip("mpi4py is not installed")
    proc = subprocess.run([sys.executable, "-m", "minidl.cli", "launch", "-n", "2", "--dry-run",
                           "--", "python", "train.py"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("minidl launch: ") and line.endswith("python -m mpi4py train.py")
    assert " -n 2 " in line


def test_info_reports_mpi_and_nccl(capsys):
    from minidl.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "\nmpi: " in out and "\nnccl: " in out
