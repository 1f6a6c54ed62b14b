"""What each rank runs in tests/test_distributed*.py: ``mpiexec -n K python dist_worker.py
SCENARIO OUT [args]``; every rank writes its results to OUT/SCENARIO-rank<r>.npz, which the
test (one process) compares with its own one-process references.

The models, data and one-process emulations live here too, so the test and the ranks build
exactly the same things.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minidl as md  # noqa: E402
import minidl.distributed as dist  # noqa: E402
import minidl.functional as F  # noqa: E402
from minidl import nn, optim  # noqa: E402
from minidl.data import DataLoader  # noqa: E402

STEPS_DATA = 40        # samples of the float32 runs; global batch 12 -> 3 full + one of 4


def cnn() -> nn.Module:
    md.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(36, 5))


def data(n: int = STEPS_DATA, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 1, 8, 8)).astype(dtype), rng.integers(0, 5, n)


def bn_net() -> nn.Module:
    md.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, dtype=np.float64), nn.BatchNorm2d(4, dtype=np.float64),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3, dtype=np.float64))


def bn_data(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, 3, 6, 6)) * 2 + 0.5
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels-last
    return x, rng.integers(0, 3, n)


def weights(model: nn.Module) -> np.ndarray:
    return np.concatenate([p.numpy().ravel().astype(np.float64) for p in model.parameters()])


def sgd(params) -> optim.Optimizer:
    return optim.SGD(params, lr=0.1, momentum=0.9)


def mpi_order(world_size: int) -> str:
    """Which order MPI adds the ranks' buffers in ('tree': (a0+a1)+(a2+a3), 'seq':
    ((a0+a1)+a2)+...), found by summing float32 buffers whose sums differ by order."""
    comm = dist.world()
    parts = [np.random.default_rng(7 + r).standard_normal(4096).astype(np.float32)
             * np.float32(10.0) ** np.random.default_rng(r).integers(-3, 4, 4096)
             for r in range(world_size)]
    buf = parts[comm.rank].copy()
    comm.allreduce(buf)
    for name in ("seq", "tree"):
        if np.array_equal(buf, add_in_order(parts, name)):
            return name
    return "unknown"


def add_in_order(parts: list[np.ndarray], order: str) -> np.ndarray:
    if order == "tree" and len(parts) == 4:
        return (parts[0] + parts[1]) + (parts[2] + parts[3])
    total = parts[0].copy()
    for p in parts[1:]:
        total = total + p
    return total


def emulate(model: nn.Module, opt: optim.Optimizer, shards: list[tuple[np.ndarray, np.ndarray]],
            order: str, divide_by_n: bool = False) -> None:
    """One DDP step in one process: each shard's gradient (as its rank computes it) times its
    share (or 1/N, the negative control), summed in MPI's order, then the update."""
    total = sum(len(y) for _, y in shards)
    per_rank = []
    for x, y in shards:
        opt.zero_grad()
        F.cross_entropy(model(md.tensor(x)), md.tensor(y)).backward()
        w = 1.0 / len(shards) if divide_by_n else len(y) / total
        per_rank.append([p.grad.data.ravel() * p.grad.dtype.type(w) for p in model.parameters()])
    for i, p in enumerate(model.parameters()):
        p.grad.data[...] = add_in_order([g[i] for g in per_rank], order).reshape(p.shape)
    opt.step()


def run_ddp(out: Path, epochs: int = 2) -> None:
    """DDP of cnn() on data(), per-rank batch 12 / world, through DistributedSampler(pad=False)."""
    r, k = dist.get_rank(), dist.get_world_size()
    md.manual_seed(100 + r)                       # every rank starts from different weights
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(36, 5))
    before = weights(model)
    if r == 0:
        model.load_state_dict(cnn().state_dict())
    ddp = dist.DistributedDataParallel(model, bucket_mb=0.0005)   # several buckets
    after_broadcast = weights(model)
    x, y = data()
    sampler = dist.DistributedSampler(range(len(y)), shuffle=True, seed=3, pad=False)
    loader = DataLoader((x, y), batch_size=12 // k, sampler=sampler)
    opt = sgd(ddp.parameters())
    batches = []
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(ddp(xb), yb).backward()
            opt.step()
            batches.append(len(yb))
    np.savez(out / f"ddp-rank{r}.npz", before=before, after_broadcast=after_broadcast,
             final=weights(model), order=mpi_order(k), batches=np.array(batches),
             buckets=len(ddp.buckets))


def run_overlap(out: Path) -> None:
    """The same steps with overlap on and off; also how many buckets started before the
    backward pass had produced its last gradient (only possible with the engine's hook)."""
    r = dist.get_rank()
    finals, early = [], []
    for overlap in (True, False):
        model = cnn()
        ddp = dist.DistributedDataParallel(model, bucket_mb=0.0005, overlap=overlap)
        opt = sgd(ddp.parameters())
        x, y = data()
        seen: list[int] = []
        # the gradient of the first layer's output arrives before that layer's backward
        # runs: buckets started by then overlapped with backward
        def watch(module, args, y, seen=seen, ddp=ddp):
            y.register_hook(lambda g: seen.append(ddp._next))

        model[0].register_forward_hook(watch)
        for step in range(3):
            idx = np.arange(step * 12, step * 12 + 12)[r::dist.get_world_size()]
            opt.zero_grad()
            F.cross_entropy(ddp(md.tensor(x[idx])), md.tensor(y[idx])).backward()
            opt.step()
        started_early = sum(seen)
        finals.append(weights(model))
        early.append(started_early)
    np.savez(out / f"overlap-rank{r}.npz", on=finals[0], off=finals[1], early=np.array(early))


class TwoHeads(nn.Module):
    """head_b is used only when the local batch's first label is even; head_c never."""

    def __init__(self) -> None:
        super().__init__()
        md.manual_seed(0)
        self.body = nn.Linear(4, 6)
        self.head_a, self.head_b, self.head_c = nn.Linear(6, 3), nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x: md.Tensor, use_b: bool) -> md.Tensor:
        h = F.relu(self.body(x))
        return self.head_a(h) + self.head_b(h) if use_b else self.head_a(h)


def run_unused(out: Path) -> None:
    r = dist.get_rank()
    model = TwoHeads()
    ddp = dist.DistributedDataParallel(model, bucket_mb=0.0001)
    opt = sgd(ddp.parameters())
    rng = np.random.default_rng(5)
    for step in range(4):
        x = rng.standard_normal((8, 4)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        opt.zero_grad()
        use_b = (step + r) % 2 == 0            # ranks disagree on every step
        F.cross_entropy(ddp(md.tensor(x[r::2]), use_b), md.tensor(y[r::2])).backward()
        opt.step()
    np.savez(out / f"unused-rank{r}.npz", final=weights(model),
             c_grad_none=model.head_c.weight.grad is None)


def run_ready_order(out: Path) -> None:
    """Gradients reported final in a different order on each rank (as an engine hook may):
    buckets must still start in bucket order everywhere, and the sums be right."""
    r = dist.get_rank()
    model = cnn()
    ddp = dist.DistributedDataParallel(model, bucket_mb=0.0005)
    x, _ = data()
    ddp(md.tensor(x[:4 + 2 * r]))        # arms the reduction: 4 and 6 samples, weights 0.4, 0.6
    params = list(model.parameters())
    for p in params:
        p.grad = md.Tensor(np.full(p.shape, r + 1.0, np.float32))
    for i in np.random.default_rng(r).permutation(len(params)):
        ddp._grad_ready(params[i])       # what the post-accumulate hook calls
    np.savez(out / f"order-rank{r}.npz", grads=np.concatenate([p.grad.numpy().ravel()
                                                               for p in params]))


def run_syncbn(out: Path, steps: int = 10) -> None:
    """SyncBatchNorm in float64 under DDP, global batch 10 split unevenly (np.array_split)."""
    r, k = dist.get_rank(), dist.get_world_size()
    model = dist.convert_sync_batchnorm(bn_net())
    ddp = dist.DistributedDataParallel(model)
    opt = sgd(ddp.parameters())
    x, y = bn_data()
    idx = np.array_split(np.arange(len(y)), k)[r]
    xs = x[idx]
    assert xs.strides[1] == xs.itemsize, "the test input must be channels-last"
    for _ in range(steps):
        opt.zero_grad()
        out_ = ddp(md.tensor(xs))
        F.cross_entropy(out_, md.tensor(y[idx])).backward()
        opt.step()
    bn = model[1]
    np.savez(out / f"syncbn-rank{r}.npz", final=weights(model),
             running_mean=bn.running_mean.numpy(), running_var=bn.running_var.numpy(),
             sync=type(bn).__name__)


def trainer_run(out: Path, epochs: int, tag: str, resume: str | None = None,
                dropout: bool = False) -> None:
    """Trainer.fit of cnn() with DDP, a DistributedSampler loader (global batch 12) and a
    ModelCheckpoint to OUT/<tag>-<epoch>.npz; weights and history go to
    OUT/train-<tag>-rank<r>.npz."""
    from minidl.train import EarlyStopping, ModelCheckpoint, Trainer  # noqa: PLC0415

    r, k = dist.get_rank(), dist.get_world_size()
    net = cnn()
    if dropout:   # every rank draws its own masks: a resume must give each its own RNG back
        net = nn.Sequential(*list(net)[:-1], nn.Dropout(0.3), net[-1])
        dist.manual_seed(0)
    else:
        md.manual_seed(0)
    model = dist.DistributedDataParallel(net)
    x, y = data(48)
    loader = DataLoader((x, y), batch_size=12 // k,
                        sampler=dist.DistributedSampler(range(48), seed=4))
    callbacks = [EarlyStopping("loss", patience=10),
                 ModelCheckpoint(str(out / (tag + "-{epoch}.npz")), monitor="loss",
                                 save_best_only=False, save_last=False)]
    trainer = Trainer(model, sgd(model.parameters()), "cross_entropy", metrics=["accuracy"],
                      callbacks=callbacks, verbose=2)
    # validation sharded unevenly (11/10 or 6/5/5/5): its figures must still be the global ones
    val = DataLoader(data(21), batch_size=8 // k, sampler=dist.DistributedSampler(
        range(21), shuffle=False, pad=False))
    history = trainer.fit(loader, epochs=epochs, resume=resume, val_loader=val)
    np.savez(out / f"train-{tag}-rank{r}.npz", final=weights(model),
             loss=np.array(history["loss"]), accuracy=np.array(history["accuracy"]),
             val_loss=np.array(history["val_loss"]))


def run_aux(out: Path) -> None:
    """A model with two outputs and a loss on the first only (the second's layer is reached
    by the output, not by the loss): two DDP steps must reduce and stay in step."""
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.a(x), self.b(x)

    r, k = dist.get_rank(), dist.get_world_size()
    md.manual_seed(0)
    ddp = dist.DistributedDataParallel(Two())
    x = np.random.default_rng(0).standard_normal((4 * k, 3)).astype(np.float32)
    grads = []
    for _ in range(2):
        main, _aux = ddp(md.tensor(x[r::k]))
        main.sum().backward()
        grads.append(ddp.module.a.weight.grad.numpy().copy())
        assert ddp.module.b.weight.grad is None
        for p in ddp.parameters():
            p.grad = None
    np.savez(out / f"aux-rank{r}.npz", grads=np.stack(grads))


def run_signal(out: Path, who: int) -> None:
    """Trainer.fit under DDP; rank ``who`` alone gets SIGINT after step 3: every rank must
    stop at the same step, rank 0 save, and the job print one line (exit 130)."""
    import signal  # noqa: PLC0415

    from minidl.train import LambdaCallback, ModelCheckpoint, Trainer  # noqa: PLC0415

    k = dist.get_world_size()
    md.manual_seed(0)
    model = dist.DistributedDataParallel(cnn())
    x, y = data(48)
    loader = DataLoader((x, y), batch_size=12 // k,
                        sampler=dist.DistributedSampler(range(48), seed=4))

    def maybe_signal(trainer, step):
        if dist.get_rank() == who and trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(model, sgd(model.parameters()), "cross_entropy", metrics=[], verbose=0,
                      callbacks=[ModelCheckpoint(str(out / "ck.npz"), monitor="loss",
                                                 save_best_only=False),
                                 LambdaCallback(on_batch_end=maybe_signal)])
    trainer.fit(loader, epochs=2)


def run_fail(out: Path, how: str) -> None:
    """Two steps of DDP; rank 1 then fails ``how``: raise, SIGKILL itself, or exit early."""
    import signal  # noqa: PLC0415

    r = dist.get_rank()
    model = cnn()
    ddp = dist.DistributedDataParallel(model)
    x, y = data()
    for step in range(50):
        if step == 2 and r == 1:
            if how == "raise":
                raise ValueError("a bad batch on rank 1")
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "exit":
                sys.exit(0)
        F.cross_entropy(ddp(md.tensor(x[r::2])), md.tensor(y[r::2])).backward()


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    dist.init()
    if scenario == "ddp":
        run_ddp(out)
        run_syncbn(out)
        if dist.get_world_size() == 2:
            run_overlap(out)
            run_unused(out)
            run_ready_order(out)
    elif scenario == "train":
        # uninterrupted 4 epochs; 2 epochs saved; resumed to 4 from the 2-epoch checkpoint
        trainer_run(out, 4, "full")
        trainer_run(out, 2, "half")
        trainer_run(out, 4, "resumed", resume=str(out / "half-2.npz"))
        trainer_run(out, 3, "dfull", dropout=True)
        trainer_run(out, 2, "dhalf", dropout=True)
        trainer_run(out, 3, "dresumed", resume=str(out / "dhalf-1.npz"), dropout=True)
    elif scenario == "resume":
        trainer_run(out, 4, f"resumed{dist.get_world_size()}", resume=sys.argv[3])
    elif scenario == "aux":
        run_aux(out)
    elif scenario == "signal":
        run_signal(out, int(sys.argv[3]))
    elif scenario == "fail":
        run_fail(out, sys.argv[3])
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
