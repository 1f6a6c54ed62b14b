"""Data parallelism: DistributedDataParallel (bucketed gradient sums weighted by each rank's
share of the global batch, overlapped with backward), broadcast_parameters, broadcast_state.

Why weights and not an average: rank r's loss is the mean over its n_r samples, so its
gradient is g_r = (1/n_r) sum of per-sample gradients, and the gradient of the global batch
of N = sum n_r samples is sum_r (n_r / N) g_r. Dividing the sum by the number of ranks is
right only when every n_r is the same; with an uneven last batch it is a different step.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..autograd import Tensor, in_backward, is_grad_enabled, queue_callback
from ..backend import get_array_module, to_numpy
from ..nn.module import Module
from .buckets import Bucket, plan_buckets
from .comm import Communicator, Handle
from .world import world

__all__ = ["DistributedDataParallel", "broadcast_parameters", "broadcast_state"]

def broadcast_parameters(module: Module, src: int = 0, comm: Communicator | None = None
                         ) -> None:
    """Give every rank rank ``src``'s parameters and buffers (in place; one broadcast per
    dtype). Ranks that started from different random weights end identical.

        >>> from minidl import nn
        >>> broadcast_parameters(nn.Linear(2, 2))     # one process: nothing to do
    """
    comm = comm or world()
    if comm.size == 1:
        return
    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t is not None]
    by_dtype: dict[Any, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(np.dtype(t.dtype), []).append(t)
    for dtype, group in by_dtype.items():
        # staged through the host: it runs once per run, so simplicity beats a GPU path
        flat = np.concatenate([to_numpy(t.data).reshape(-1) for t in group]).astype(dtype)
        comm.broadcast(flat, src)
        offset = 0
        for t in group:
            part = flat[offset:offset + t.size].reshape(t.shape)
            offset += t.size
            xp = get_array_module(t.data)
            t.data[...] = part if xp is np else xp.asarray(part)


def broadcast_state(optimizer: Any, src: int = 0, comm: Communicator | None = None) -> None:
    """Give every rank rank ``src``'s optimiser state (moments, step counts, learning
    rates), through ``state_dict`` / ``load_state_dict``."""
    comm = comm or world()
    if comm.size == 1:
        return
    state = comm.broadcast_object(optimizer.state_dict() if comm.rank == src else None, src)
    if comm.rank != src:
        optimizer.load_state_dict(state)


class DistributedDataParallel(Module):
    """Wrap ``module`` so that after ``loss.backward()`` every rank holds the gradient of the
    global batch (the union of the ranks' local batches), as one process would compute it.

    Construction broadcasts rank 0's parameters and buffers. Each forward records the local
    batch size (the first dimension of the first argument) and the parameters its output
    depends on; parameters the output does not reach count as done at once (contributing no
    gradient), so a branch unused on some rank never hangs the others. During backward each
    parameter's gradient, once final, completes its slot in a bucket (``bucket_mb`` MiB,
    filled in reverse parameter order); a complete bucket is packed as ``(n_r / N) * grad``
    and its sum over ranks starts at once, nonblocking, in bucket order on every rank, while
    backward goes on. When the last bucket has started, all are waited for and unpacked into
    ``.grad``, before ``backward()`` returns.

    Args:
        module: the model; ``ddp.module`` is it, and ``state_dict`` keys start with
            ``module.``, as in torch.
        bucket_mb: the size of a bucket in MiB.
        overlap: start each bucket's sum as soon as it is complete (True) or only after
            every gradient is final (False, blocking; the same numbers, bit for bit).
        comm: the communicator (default: the job's world; DDP uses a duplicate of it).

    Each parameter's gradient is reported final by the engine's post-accumulate-grad hook
    (``Tensor.register_post_accumulate_grad_hook``) while backward still runs, so a bucket's
    sum starts as soon as its last gradient is in and overlaps the rest of the backward pass.

    ``no_sync()`` skips the reduction for gradient accumulation; the next backward outside it
    reduces the accumulated gradients, each rank weighted by its samples since the last
    reduction. Exact: the weights, so uneven last batches give the one-process step. Not the
    same as one process: BatchNorm (local statistics; use :class:`SyncBatchNorm`) and sums
    in another order (about 1e-7 relative in float32).
    """

    def __init__(self, module: Module, bucket_mb: float = 25, overlap: bool = True,
                 comm: Communicator | None = None) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a minidl.nn.Module, got "
                            f"{type(module).__name__}")
        if not bucket_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_mb must be > 0, got {bucket_mb}")
        self.module = module
        comm = comm or world()
        self.comm = comm.dup()
        self.bucket_mb, self.overlap = bucket_mb, bool(overlap)
        broadcast_parameters(module, 0, self.comm)
        params = [p for p in module.parameters() if p.requires_grad]
        plan = plan_buckets(params, int(bucket_mb * 2**20))
        self.buckets = [Bucket([params[i] for i in b]) for b in plan]
        self._slot = {id(p): b for b, bucket in enumerate(self.buckets)
                      for p in bucket.params}
        self._require_sync = True
        self._samples = 0          # local samples since the last reduction
        self._armed = False        # a reduction is expected from the current backward
        self._next = 0             # the next bucket to start
        self._local_samples = 0.0  # this rank's samples in the current reduction
        self._count: Any = None    # all ranks' samples (being summed)
        self._count_handle: Handle | None = None
        self._done: set[int] = set()
        self._reached: list[Tensor] = []  # parameters the current output depends on
        self._finish_queued = False         # the end-of-backward check is queued
        for p in params:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    # ---- forward -------------------------------------------------------------------------
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if not is_grad_enabled():   # evaluation: no backward, nothing to count or reduce
            return self.module(*inputs, **kwargs)
        self._samples += _batch_size(inputs)
        out = self.module(*inputs, **kwargs)
        if self.comm.size > 1 and self._require_sync:
            self._arm(out)
        return out

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, forward and backward accumulate local gradients without reducing them."""
        previous, self._require_sync = self._require_sync, False
        try:
            yield
        finally:
            self._require_sync = previous

    def _arm(self, out: Any) -> None:
        """Prepare the reduction of the backward of ``out``: start the sum of the sample
        counts, and count done at once the parameters ``out`` does not depend on."""
        if self._armed:
            raise RuntimeError("DistributedDataParallel: a second forward before the backward "
                               "of the first; run forwards without backward under "
                               "minidl.no_grad(), accumulation steps under ddp.no_sync()")
        self._local_samples = float(self._samples)
        self._count = np.array([self._local_samples], dtype=np.float64)
        self._count_handle = self.comm.iallreduce(self._count, "sample count")
        self._samples = 0
        reached = _leaves_reached(out)
        self._reached = [p for b in self.buckets for p in b.params if id(p) in reached]
        self._done = set()
        self._finish_queued = False
        for bucket in self.buckets:
            bucket.pending = sum(1 for p in bucket.params if id(p) in reached)
        self._next = 0
        self._armed = True
        if self.overlap:
            self._start_ready_buckets()
        elif all(b.pending == 0 for b in self.buckets):
            self._reduce_all()

    # ---- backward ------------------------------------------------------------------------
    def _grad_ready(self, p: Tensor) -> None:
        """``p.grad`` is final for this backward."""
        if not self._armed or id(p) in self._done:
            return
        if not self._finish_queued and in_backward():  # once per backward: see below
            queue_callback(self._loss_did_not_reach)
            self._finish_queued = True
        self._done.add(id(p))
        bucket = self.buckets[self._slot[id(p)]]
        bucket.pending -= 1
        if self.overlap:
            if bucket.pending == 0:
                self._start_ready_buckets()
            if self._armed:
                for b in self.buckets[:self._next]:  # MPI progresses only inside MPI calls
                    b.handle.test()
        elif all(b.pending == 0 for b in self.buckets):
            self._reduce_all()

    def _loss_did_not_reach(self) -> None:
        """At the end of a backward: parameters the output depends on but the loss did not
        (an auxiliary output left out of the loss) got no gradient; report them done, with
        no gradient, so the sums start and end on every rank alike instead of waiting."""
        if not self._armed:
            return
        for p in self._reached:
            if id(p) not in self._done:
                self._grad_ready(p)

    def _weight(self) -> float:
        self._count_handle.wait()                     # type: ignore[union-attr]
        total = float(self._count[0])
        if total <= 0:
            raise RuntimeError("DistributedDataParallel: no rank had samples in this step")
        return self._local_samples / total

    def _start_ready_buckets(self) -> None:
        """Start, in bucket order, every bucket that is complete; after the last, finish."""
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            self._start(self.buckets[self._next])
            self._next += 1
        if self._next == len(self.buckets):
            self._finish()

    def _start(self, bucket: Bucket) -> None:
        buf = bucket.pack(self._weight())
        bucket.handle = self._comm_for(buf).iallreduce(buf, "gradient bucket")

    def _reduce_all(self) -> None:
        for bucket in self.buckets:
            self._start(bucket)
        self._next = len(self.buckets)
        self._finish()

    def _finish(self) -> None:
        for bucket in self.buckets:
            bucket.handle.wait()
            bucket.unpack()
            bucket.handle = None
        self._armed = False

    def _comm_for(self, buf: Any) -> Any:
        if get_array_module(buf) is np:
            return self.comm
        from .nccl import nccl_for  # noqa: PLC0415 - CUDA buckets only

        return nccl_for(self.comm, get_array_module(buf))

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{b.nbytes / 2**20:.2f}" for b in self.buckets)
        return f"world_size={self.comm.size}, buckets=[{sizes}] MiB, overlap={self.overlap}"


def _batch_size(inputs: tuple) -> int:
    for x in inputs:
        shape = getattr(x, "shape", None)
        if shape:
            return int(shape[0])
    raise ValueError("DistributedDataParallel: cannot tell the local batch size; pass the "
                     "batch (N, ...) as the first positional argument")


def _leaves_reached(out: Any) -> set[int]:
    """ids of the leaf tensors the graph of ``out`` (a Tensor, or a tuple/list/dict of them)
    depends on, by a walk over its Functions' parents."""
    stack: list[Any] = []
    outs = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) \
        else [out]
    leaves: set[int] = set()
    for t in outs:
        if isinstance(t, Tensor) and t.requires_grad:
            if t.creator is None:
                leaves.add(id(t))
            else:
                stack.append(t.creator)
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for edge in fn.__dict__.get("parents", ()):
            if edge is None:
                continue
            if isinstance(edge, Tensor):
                leaves.add(id(edge))
            else:
                stack.append(edge[0])
    return leaves
