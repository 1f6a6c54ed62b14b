"""Data-parallel training under mpiexec with 2-4 ranks, against one process.

Each scenario runs once per module (``mpiexec -n K python tests/dist_worker.py ...``, every
rank writing its results to a folder) and the tests compare those results with references
computed here in one process: weights after N steps equal to 1e-6 and bitwise equal to a
one-process emulation of the same reduction; uneven shards exact (divide-by-N is not);
SyncBatchNorm to 1e-10 in float64; resume; failures that end the job within seconds.
Skipped (with the reason) without mpi4py or mpiexec.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minidl as md
import minidl.distributed as dist
import minidl.functional as F
from minidl.data import DataLoader
from minidl.distributed.launcher import find_mpiexec, mpiexec_command
from minidl.train import load_checkpoint

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'minidl[mpi]')")
if find_mpiexec() is None:
    pytest.skip("mpiexec not found (pip install 'minidl[mpi]')", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
import dist_worker as W  # noqa: E402

WORKER = str(Path(__file__).parent / "dist_worker.py")
ROOT = str(Path(__file__).resolve().parents[1])


def mpirun(k: int, *args: str, timeout: float = 120, env: dict | None = None,
           check: bool = True, mpi4py_abort: bool = True) -> subprocess.CompletedProcess:
    """Run the worker as ``k`` ranks (through minidl launch's command line, no binding;
    ``mpi4py_abort=False``: plain ``python``, so minidl.distributed's own handler acts)."""
    argv, _ = mpiexec_command(k, [sys.executable, WORKER, *args], threads=1, bind=False,
                              abort_on_exception=mpi4py_abort)
    full_env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


def results(folder: Path, name: str, k: int) -> list:
    return [np.load(folder / f"{name}-rank{r}.npz") for r in range(k)]


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory):
    """``ddp_job(k)``: the folder of the worker's 'ddp' scenario run as k ranks (run once)."""
    done: dict[int, Path] = {}

    def get(k: int) -> Path:
        if k not in done:
            done[k] = tmp_path_factory.mktemp(f"ddp{k}")
            mpirun(k, "ddp", str(done[k]))
        return done[k]
    return get


@pytest.fixture(params=[2, 3, 4], ids=lambda k: f"{k}ranks")
def ddp_run(request, ddp_job):
    return request.param, ddp_job(request.param)


# ---- one-process references ---------------------------------------------------------------
def one_process(epochs: int = 2) -> np.ndarray:
    """The float32 run of dist_worker.run_ddp in one process, global batch 12."""
    model = W.cnn()
    opt = W.sgd(model.parameters())
    x, y = W.data()
    loader = DataLoader((x, y), batch_size=12, sampler=dist.DistributedSampler(
        range(len(y)), num_replicas=1, rank=0, seed=3, pad=False))
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return W.weights(model)


def emulated(k: int, order: str, divide_by_n: bool = False, epochs: int = 2) -> np.ndarray:
    """run_ddp's k ranks emulated in one process: the same shards of each global batch, the
    same weights and the same order of the sum."""
    model = W.cnn()
    opt = W.sgd(model.parameters())
    x, y = W.data()
    sampler = dist.DistributedSampler(range(len(y)), num_replicas=1, rank=0, seed=3, pad=False)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order_ = sampler.indices()
        for start in range(0, len(order_), 12):
            block = order_[start:start + 12]
            W.emulate(model, opt, [(x[block[r::k]], y[block[r::k]]) for r in range(k)], order,
                      divide_by_n)
    return W.weights(model)


# ---- DDP ----------------------------------------------------------------------------------
def test_ranks_match_one_process_and_the_emulation_bitwise(ddp_run):
    k, folder = ddp_run
    ranks = results(folder, "ddp", k)
    final = ranks[0]["final"]
    for r in ranks[1:]:
        assert np.array_equal(r["final"], final), "ranks ended with different weights"
    assert np.abs(final - one_process()).max() < 1e-6
    order = str(ranks[0]["order"])
    if order == "unknown":
        pytest.skip("this MPI adds in an order the emulation does not know")
    assert np.array_equal(final, emulated(k, order))


def test_uneven_shards_are_exact_and_divide_by_n_is_not(ddp_job):
    k, folder = 3, ddp_job(3)
    ranks = results(folder, "ddp", k)
    # 40 = 3*12 + 4: the last global batch of each epoch splits 2/1/1 over the ranks
    assert [r["batches"].tolist() for r in ranks] == [[4, 4, 4, 2] * 2, [4, 4, 4, 1] * 2,
                                                      [4, 4, 4, 1] * 2]
    reference = one_process()
    assert np.abs(ranks[0]["final"] - reference).max() < 1e-6
    wrong = emulated(3, str(ranks[0]["order"]), divide_by_n=True)
    assert np.abs(wrong - reference).max() > 1e-4, "divide-by-N should be visibly off"


def test_broadcast_parameters_makes_different_starts_identical(ddp_run):
    k, folder = ddp_run
    ranks = results(folder, "ddp", k)
    assert not np.array_equal(ranks[0]["before"], ranks[1]["before"])
    for r in ranks:
        assert np.array_equal(r["after_broadcast"], W.weights(W.cnn()))
    assert int(ranks[0]["buckets"]) == 3


def test_syncbatchnorm_float64_matches_one_process(ddp_run):
    k, folder = ddp_run
    ranks = results(folder, "syncbn", k)
    model = W.bn_net()
    opt = W.sgd(model.parameters())
    x, y = W.bn_data()
    for _ in range(10):
        opt.zero_grad()
        F.cross_entropy(model(md.tensor(x)), md.tensor(y)).backward()
        opt.step()
    bn = model[1]
    for r in ranks:
        assert str(r["sync"]) == "SyncBatchNorm"
        assert np.array_equal(r["running_mean"], ranks[0]["running_mean"])
        assert np.array_equal(r["running_var"], ranks[0]["running_var"])
        assert np.array_equal(r["final"], ranks[0]["final"])
    assert np.abs(ranks[0]["final"] - W.weights(model)).max() < 1e-10
    assert np.abs(ranks[0]["running_mean"] - bn.running_mean.numpy()).max() < 1e-10
    assert np.abs(ranks[0]["running_var"] - bn.running_var.numpy()).max() < 1e-10


def test_local_batchnorm_is_not_the_global_one():
    """The control: without SyncBatchNorm the ranks' normalisation differs from one process
    (so the test above can fail)."""
    x, _ = W.bn_data()
    bn = md.nn.BatchNorm2d(3, dtype=np.float64)
    full = bn(md.tensor(x)).numpy()
    halves = np.concatenate([bn(md.tensor(x[:5])).numpy(), bn(md.tensor(x[5:])).numpy()])
    assert np.abs(full - halves).max() > 1e-3


def test_overlap_on_and_off_are_bitwise_equal(ddp_job):
    k, folder = 2, ddp_job(2)
    for r in results(folder, "overlap", k):
        assert np.array_equal(r["on"], r["off"])


def test_overlap_starts_buckets_while_backward_runs(ddp_job):
    k, folder = 2, ddp_job(2)
    early = results(folder, "overlap", k)[0]["early"]
    assert early[0] > 0, "no bucket started before the first layer's backward"
    assert early[1] == 0, "the blocking mode started a bucket early"


def test_gradients_final_in_any_order_are_summed_in_bucket_order(ddp_job):
    folder = ddp_job(2)
    a, b = results(folder, "order", 2)
    expected = np.float32(0.4) * np.float32(1) + np.float32(0.6) * np.float32(2)
    assert np.array_equal(a["grads"], b["grads"])
    assert np.all(a["grads"] == expected)


def test_parameters_without_gradient_on_some_ranks_do_not_hang(ddp_job):
    k, folder = 2, ddp_job(2)
    a, b = results(folder, "unused", k)
    assert np.array_equal(a["final"], b["final"])
    assert bool(a["c_grad_none"]) and bool(b["c_grad_none"])


# ---- Trainer: figures averaged over ranks, checkpoints on rank 0, resume ------------------
@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    mpirun(2, "train", str(folder))
    mpirun(4, "resume", str(folder), str(folder / "half-2.npz"))
    return folder


def test_trainer_resume_is_bitwise_and_figures_are_global(train_run):
    full = results(train_run, "train-full", 2)
    resumed = results(train_run, "train-resumed", 2)
    for r in full + resumed:
        assert np.array_equal(r["final"], full[0]["final"])
        assert np.array_equal(r["loss"], full[0]["loss"])      # same figures on every rank
    # one process, same global batch: the averaged loss is the global batch's loss
    from minidl.train import Trainer  # noqa: PLC0415

    model = W.cnn()
    x, y = W.data(48)
    loader = DataLoader((x, y), batch_size=12, sampler=dist.DistributedSampler(
        range(48), num_replicas=1, rank=0, seed=4))
    history = Trainer(model, W.sgd(model.parameters()), "cross_entropy", metrics=["accuracy"],
                      verbose=0).fit(loader, epochs=4,
                                     val_loader=DataLoader(W.data(21), batch_size=8))
    assert np.abs(full[0]["final"] - W.weights(model)).max() < 1e-6
    assert np.abs(full[0]["loss"] - np.array(history["loss"])).max() < 1e-6
    assert np.abs(full[0]["val_loss"] - np.array(history["val_loss"])).max() < 1e-6
    assert np.array_equal(full[0]["accuracy"], np.array(history["accuracy"]))
    # rank 0 alone wrote the checkpoints: one file per epoch, no rank suffixes
    assert sorted(p.name for p in train_run.glob("half-*.npz")) == ["half-1.npz", "half-2.npz"]


def test_resume_gives_every_rank_its_own_random_stream_back(train_run):
    """With dropout each rank draws its own masks; resuming from epoch 1 of 3 is bitwise
    the uninterrupted run only if every rank gets its own RNG state back."""
    full = results(train_run, "train-dfull", 2)
    resumed = results(train_run, "train-dresumed", 2)
    plain = results(train_run, "train-full", 2)[0]
    for r in full + resumed:
        assert np.array_equal(r["final"], full[0]["final"])
    assert not np.array_equal(full[0]["loss"][:2], plain["loss"][:2])   # dropout acted


def test_minidl_train_under_mpiexec_speaks_once(tmp_path):
    argv, _ = mpiexec_command(2, [sys.executable, "-m", "minidl.cli", "train", "mlp",
                                  "--epochs", "1", "--limit", "96", "--batch-size", "32",
                                  "--out", str(tmp_path)], threads=1, bind=False)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("final: test accuracy") == 1, proc.stdout
    assert (tmp_path / "checkpoint.last.npz").exists()


def test_resume_with_another_rank_count(train_run):
    """2 ranks saved, 4 ranks (per-rank batch 3, the same global batch 12) resume: the same
    run to float32 rounding (the sums over ranks are added in another order)."""
    full = results(train_run, "train-full", 2)[0]
    four = results(train_run, "train-resumed4", 4)
    for r in four:
        assert np.array_equal(r["final"], four[0]["final"])
        assert np.array_equal(r["loss"][:2], full["loss"][:2])   # restored history
    assert np.abs(four[0]["final"] - full["final"]).max() < 1e-6
    assert np.abs(four[0]["loss"] - full["loss"]).max() < 1e-6


# ---- failures end the job ------------------------------------------------------------------
@pytest.mark.parametrize("how, mpi4py_abort", [("raise", True), ("raise", False),
                                               ("kill", False), ("exit", False)])
def test_a_failing_rank_ends_the_whole_job_quickly(how, mpi4py_abort, tmp_path):
    start = time.monotonic()
    proc = mpirun(2, "fail", str(tmp_path), how, timeout=60, check=False,
                  env={"MINIDL_DIST_TIMEOUT": "3"}, mpi4py_abort=mpi4py_abort)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 30, f"the job took {elapsed:.1f} s to end"
    if how == "raise":
        assert proc.stderr.count("ValueError: a bad batch on rank 1") == 1, proc.stderr
    if how == "raise" and not mpi4py_abort:
        assert "minidl.distributed: rank 1 of 2 failed" in proc.stderr
    if how == "exit":
        assert "rank 1" in proc.stderr and ("did not arrive" in proc.stderr
                                            or "end of its script" in proc.stderr)


def test_an_output_the_loss_leaves_out_does_not_stall_the_reduction(tmp_path):
    """(main, aux) with the loss on main: the aux layer gets no gradient, a's gradient is
    the global one on every rank, and the next step runs (no leftover armed reduction)."""
    mpirun(2, "aux", str(tmp_path), env={"MINIDL_DIST_TIMEOUT": "20"})
    a, b = results(tmp_path, "aux", 2)
    assert np.array_equal(a["grads"], b["grads"])
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    # the gradient of main.sum() w.r.t. a.weight is the column sums of x, averaged over ranks
    expected = np.tile(x.sum(0) / 2, (2, 1))
    np.testing.assert_allclose(a["grads"][0], expected, rtol=1e-5)


@pytest.mark.parametrize("who", [0, 1])
def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(who, tmp_path):
    """SIGINT reaching rank ``who`` alone: all ranks agree at the step boundary, save once
    (rank 0) and end with the one line and exit 130, instead of hanging in a collective."""
    start = time.monotonic()
    proc = mpirun(2, "signal", str(tmp_path), str(who), timeout=60, check=False,
                  env={"MINIDL_DIST_TIMEOUT": "20"}, mpi4py_abort=False)
    assert time.monotonic() - start < 30, proc.stderr
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.count("Trainer.fit: stopped by SIGINT at epoch 1, step 3") == 1, proc.stderr
    state = load_checkpoint(tmp_path / "ck.last.npz")
    assert int(state["progress"]["step"]) == 3 and int(state["global_step"]) == 3


def test_a_script_without_mpi_runs_unchanged(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")}
    env["PYTHONPATH"] = ROOT
    subprocess.run([sys.executable, WORKER, "ddp", str(tmp_path)], check=True, env=env,
                   timeout=120, capture_output=True)
    r = np.load(tmp_path / "ddp-rank0.npz")
    assert np.array_equal(r["final"], one_process())   # DDP of one process changes nothing
