"""Communicators: the collectives data-parallel training needs, behind one small interface.

A :class:`Communicator` sums arrays in place across ranks (blocking or not), broadcasts
arrays and Python objects, gathers objects and waits at barriers. :class:`SingleProcess` is
the world of one process (everything a no-op); :class:`MPICommunicator` runs on MPI through
mpi4py; ``nccl.NCCLCommunicator`` runs on NCCL for CUDA arrays. Another backend is one more
subclass.

Hangs become errors: every wait of :class:`MPICommunicator` polls its request (sleeping
between polls, so an oversubscribed core goes to the rank that computes) and gives up after
``timeout`` seconds. It then asks every other rank, over a channel of its own, where it is;
ranks that wait anywhere answer at once, so the ranks that do not answer are named in the
error: they exited, were killed, or are stuck outside any collective.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

__all__ = ["Communicator", "SingleProcess", "MPICommunicator", "Handle", "CollectiveTimeout",
           "REDUCE_OPS"]

REDUCE_OPS = ("sum", "max", "min")
_PROBE, _REPLY = 7301, 7302        # tags on the control channel
_POLL_MAX_SLEEP = 1e-3             # seconds between polls once a wait is long
_ANSWER_GRACE = 2.0                # seconds the ranks get to say where they are
ABORT_GRACE_S = 1.0                # seconds the launcher gets to forward output before an abort


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the communicator's timeout; the message names
    the ranks that did not answer."""


class Handle:
    """A started collective; :meth:`wait` blocks until it is complete (idempotent)."""

    def __init__(self, request: Any = None, comm: MPICommunicator | None = None,
                 what: str = "") -> None:
        self.request, self.comm, self.what = request, comm, what
        self.done = request is None

    def test(self) -> bool:
        """True when complete (and drives MPI's progress engine one step)."""
        if not self.done:
            self.done = bool(self.request.Test())
        return self.done

    def wait(self) -> None:
        if not self.done:
            self.comm.wait(self.request, self.what)  # type: ignore[union-attr]
            self.done = True


class Communicator:
    """The interface; also the world of one process, where every collective is the identity.

    Arrays are NumPy arrays here (CUDA arrays go to an NCCL communicator, or are staged
    through the host by :func:`minidl.distributed.all_reduce`). Reductions work in place.
    """

    rank: int = 0
    size: int = 1

    def allreduce(self, array: Any, op: str = "sum") -> None:
        """Replace ``array`` (contiguous) by the elementwise ``op`` over all ranks."""
        _check_op(op)

    def iallreduce(self, array: Any, what: str = "allreduce") -> Handle:
        """Start an in-place sum of ``array`` over all ranks; ``array`` must not be touched
        until the returned handle's ``wait()``."""
        return Handle()

    def broadcast(self, array: Any, root: int = 0) -> None:
        """Overwrite ``array`` on every rank with rank ``root``'s."""

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``obj`` (pickled), returned on every rank."""
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        return [obj]

    def barrier(self) -> None:
        """Return once every rank has called barrier."""

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now with exit status ``code``."""
        sys.exit(code)

    def dup(self) -> Communicator:
        """A communicator over the same ranks whose collectives never interleave with this
        one's (DDP's buckets and SyncBatchNorm each use their own)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SingleProcess(Communicator):
    """The world of one process: what every script gets without MPI."""


class MPICommunicator(Communicator):
    """Collectives on an mpi4py communicator, with a timeout on every wait.

    Args:
        comm: an ``mpi4py.MPI.Comm`` (``MPI.COMM_WORLD`` for the job).
        timeout: seconds a collective may wait before the job is declared hung.
    """

    def __init__(self, comm: Any, timeout: float = 300.0, _control: _Control | None = None
                 ) -> None:
        from mpi4py import MPI  # noqa: PLC0415 - only here, and only when MPI runs

        self.MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout)
        # shared by every dup: a waiting rank answers probes whichever collective it is in
        self.control = _control or _Control(comm.Dup())
        self.count = 0                # collectives started, for the messages

    @property
    def where(self) -> str:
        """What this rank does now (told to ranks that ask after a timeout)."""
        return self.control.where

    @where.setter
    def where(self, value: str) -> None:
        self.control.where = value

    # ---- collectives ---------------------------------------------------------------------
    def allreduce(self, array: Any, op: str = "sum") -> None:
        _check_op(op)
        self.count += 1
        what = f"allreduce #{self.count} ({array.nbytes} bytes, {op})"
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, _buffer(array),
                                       op=getattr(self.MPI, op.upper())), what)

    def iallreduce(self, array: Any, what: str = "allreduce") -> Handle:
        self.count += 1
        what = f"{what} #{self.count} ({array.nbytes} bytes)"
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, _buffer(array), op=self.MPI.SUM)
        return Handle(request, self, what)

    def broadcast(self, array: Any, root: int = 0) -> None:
        self.count += 1
        self.wait(self.comm.Ibcast(_buffer(array), root=root),
                  f"broadcast #{self.count} ({array.nbytes} bytes from rank {root})")

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        # length first, then the pickle: both through timed nonblocking broadcasts
        import pickle  # noqa: PLC0415

        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == root else b""
        n = np.array([len(data)], dtype=np.int64)
        self.broadcast(n, root)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else \
            np.empty(int(n[0]), dtype=np.uint8)
        self.broadcast(buf, root)
        return obj if self.rank == root else pickle.loads(buf.tobytes())

    def allgather_object(self, obj: Any) -> list[Any]:
        import pickle  # noqa: PLC0415

        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        sizes[self.rank] = data.size
        self.allreduce(sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        # every rank fills its own slice of a zeroed buffer; one sum gathers them all
        buf = np.zeros(int(offsets[-1]), dtype=np.uint8)
        buf[offsets[self.rank]:offsets[self.rank + 1]] = data
        self.count += 1
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.BOR),
                  f"allgather #{self.count} ({buf.nbytes} bytes)")
        return [pickle.loads(buf[offsets[r]:offsets[r + 1]].tobytes())
                for r in range(self.size)]

    def barrier(self) -> None:
        self.count += 1
        self.wait(self.comm.Ibarrier(), f"barrier #{self.count}")

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # MPI_Abort makes the launcher kill every rank at once, and on a busy machine it may
        # not have forwarded what this rank just wrote: give it a moment to read the pipes
        time.sleep(ABORT_GRACE_S)
        self.MPI.COMM_WORLD.Abort(code)
        os._exit(code)   # MPI_Abort may return before the launcher ends this process

    def dup(self) -> MPICommunicator:
        return MPICommunicator(self.comm.Dup(), self.timeout, self.control)

    # ---- waiting, with a timeout ---------------------------------------------------------
    def wait(self, request: Any, what: str) -> None:
        """Wait for ``request``; after ``timeout`` seconds raise :class:`CollectiveTimeout`
        naming the ranks that did not say where they are."""
        if request.Test():
            return
        previous = self.where
        self.where = f"waiting in {what}" if previous == "running" else \
            f"{previous}, waiting in {what}"
        try:
            deadline = time.monotonic() + self.timeout
            pause = 1e-5
            while not request.Test():
                self.answer_probes()
                if time.monotonic() > deadline:
                    raise CollectiveTimeout(self.hang_report(what))
                time.sleep(pause)
                pause = min(2 * pause, _POLL_MAX_SLEEP)
        finally:
            self.where = previous

    def answer_probes(self) -> None:
        """Tell every rank that asked (after its own timeout) where this rank is."""
        status = self.MPI.Status()
        while self.control.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=_PROBE, status=status):
            asker = status.Get_source()
            self.control.comm.recv(source=asker, tag=_PROBE)
            self.control.send((self.rank, self.where), asker, _REPLY)

    def hang_report(self, what: str) -> str:
        """Ask the other ranks where they are; the message names those that do not answer."""
        for r in range(self.size):
            if r != self.rank:
                self.control.send(self.rank, r, _PROBE)
        answers: dict[int, str] = {}
        status = self.MPI.Status()
        end = time.monotonic() + min(_ANSWER_GRACE, self.timeout)
        while len(answers) < self.size - 1 and time.monotonic() < end:
            self.answer_probes()
            while self.control.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=_REPLY, status=status):
                rank, where = self.control.comm.recv(source=status.Get_source(), tag=_REPLY)
                answers[rank] = where
            time.sleep(1e-3)
        missing = [r for r in range(self.size) if r != self.rank and r not in answers]
        lines = [f"rank {self.rank} of {self.size}: {what} did not complete within "
                 f"{self.timeout:g} s (timeout: init(timeout=...) or MINIDL_DIST_TIMEOUT)."]
        if missing:
            lines.append(f"rank(s) {missing} did not arrive and do not answer: they exited "
                         f"early, were killed, or are stuck outside any collective.")
        lines += [f"rank {r} is {w}" for r, w in sorted(answers.items())]
        return "\n".join(lines)


class _Control:
    """The channel on which ranks ask each other where they are, and this rank's answer."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.where = "running"
        self.sending: list[Any] = []   # requests of isend: their pickles must stay alive

    def send(self, obj: Any, dest: int, tag: int) -> None:
        self.sending = [r for r in self.sending if not r.Test()]
        self.sending.append(self.comm.isend(obj, dest=dest, tag=tag))


def _check_op(op: str) -> None:
    if op not in REDUCE_OPS:
        raise ValueError(f"all_reduce: op must be one of {REDUCE_OPS}, got {op!r}")


def _buffer(array: Any) -> Any:
    if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable):
        raise ValueError(f"collective: needs a writable C-contiguous NumPy array, got "
                         f"{type(array).__name__} {getattr(array, 'shape', '')}")
    return array

