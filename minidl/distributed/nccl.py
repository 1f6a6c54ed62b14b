"""NCCL for CUDA arrays, through CuPy's ``cuda.nccl``: the communicator, its unique id sent
to every rank over MPI, and sums of CUDA arrays (through the host where NCCL is missing).

CuPy is reached only through the array module of the arrays themselves
(``get_array_module``), so this file needs no import of it. One GPU cannot host two NCCL
ranks: a multi-rank NCCL job needs one GPU per rank.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_array_module, to_numpy, xp_for
from .comm import Communicator, Handle, _check_op

__all__ = ["NCCLCommunicator", "exchange_unique_id", "nccl_for", "nccl_version",
           "cuda_allreduce", "nccl_dtype"]

_NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32",
                "float64": "NCCL_FLOAT64", "int32": "NCCL_INT32", "int64": "NCCL_INT64",
                "uint8": "NCCL_UINT8"}
_by_comm: dict[int, NCCLCommunicator] = {}


def exchange_unique_id(comm: Communicator, make_id: Callable[[], Any]) -> Any:
    """Rank 0's ``make_id()`` (NCCL's unique id), sent to every rank over ``comm``: the
    rendezvous NCCL needs before its communicator can be built."""
    return comm.broadcast_object(make_id() if comm.rank == 0 else None, 0)


def nccl_dtype(nccl: Any, dtype: Any) -> int:
    """NCCL's code for a NumPy dtype (``nccl`` is ``cupy.cuda.nccl``)."""
    name = _NCCL_DTYPES.get(np.dtype(dtype).name)
    if name is None:
        raise TypeError(f"NCCL: no reduction for dtype {np.dtype(dtype)}; expected one of "
                        f"{sorted(_NCCL_DTYPES)}")
    return int(getattr(nccl, name))


def _nccl_module(xp: ModuleType) -> Any:
    nccl = getattr(getattr(xp, "cuda", None), "nccl", None)
    return nccl if nccl is not None and getattr(nccl, "available", False) else None


def nccl_version() -> int | None:
    """NCCL's version number as CuPy reports it; None without CuPy, a GPU or NCCL."""
    try:
        xp = xp_for("cuda")
    except RuntimeError:
        return None
    nccl = _nccl_module(xp)
    return int(nccl.get_version()) if nccl is not None else None


class _CudaHandle(Handle):
    """An NCCL operation queued on the communicator's stream."""

    def __init__(self, event: Any, xp: ModuleType) -> None:
        super().__init__()
        self.event, self.xp, self.done = event, xp, False

    def test(self) -> bool:
        self.done = self.done or bool(self.event.done)
        return self.done

    def wait(self) -> None:
        # order later work on the current stream after the reduction, without a host sync
        self.xp.cuda.get_current_stream().wait_event(self.event)
        self.done = True


class NCCLCommunicator(Communicator):
    """Collectives on CUDA arrays over NCCL, between the ranks of the MPI communicator
    ``mpi`` (which also carries the unique id and every object collective)."""

    def __init__(self, mpi: Communicator, xp: ModuleType) -> None:
        nccl = _nccl_module(xp)
        if nccl is None:
            raise RuntimeError("NCCL: CuPy has no NCCL; pip install nvidia-nccl-cu12 (CuPy's "
                               "name for it), or sums of CUDA arrays go through the host")
        self.mpi, self.xp, self.nccl = mpi, xp, nccl
        self.rank, self.size = mpi.rank, mpi.size
        uid = exchange_unique_id(mpi, nccl.get_unique_id)
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.stream = xp.cuda.Stream(non_blocking=True)

    def _queue(self, array: Any) -> None:
        # NCCL's stream must wait for the kernels that wrote ``array`` on the current one
        ready = self.xp.cuda.Event()
        ready.record(self.xp.cuda.get_current_stream())
        self.stream.wait_event(ready)

    def iallreduce(self, array: Any, what: str = "allreduce", op: str = "sum") -> Handle:
        _check_op(op)
        self._queue(array)
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size,
                            nccl_dtype(self.nccl, array.dtype),
                            int(getattr(self.nccl, f"NCCL_{op.upper()}")), self.stream.ptr)
        done = self.xp.cuda.Event()
        done.record(self.stream)
        return _CudaHandle(done, self.xp)

    def allreduce(self, array: Any, op: str = "sum") -> None:
        self.iallreduce(array, op=op).wait()

    def broadcast(self, array: Any, root: int = 0) -> None:
        self._queue(array)
        self.comm.bcast(array.data.ptr, array.size, nccl_dtype(self.nccl, array.dtype), root,
                        self.stream.ptr)
        done = self.xp.cuda.Event()
        done.record(self.stream)
        _CudaHandle(done, self.xp).wait()

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        return self.mpi.broadcast_object(obj, root)

    def allgather_object(self, obj: Any) -> list[Any]:
        return self.mpi.allgather_object(obj)

    def barrier(self) -> None:
        self.stream.synchronize()
        self.mpi.barrier()

    def abort(self, code: int = 1) -> None:
        self.mpi.abort(code)


def nccl_for(comm: Communicator, xp: ModuleType) -> Communicator:
    """The NCCL communicator over ``comm``'s ranks (built once, on first use; every rank
    must get here together), or ``comm`` itself wrapped to stage through the host when CuPy
    has no NCCL."""
    key = id(comm)
    if key not in _by_comm:
        _by_comm[key] = NCCLCommunicator(comm, xp) if _nccl_module(xp) is not None else \
            _HostStaged(comm)  # type: ignore[assignment]
    return _by_comm[key]


class _HostStaged(Communicator):
    """Sums of CUDA arrays through the host, for CuPy without NCCL (correct, slower)."""

    def __init__(self, comm: Communicator) -> None:
        self.inner, self.rank, self.size = comm, comm.rank, comm.size

    def allreduce(self, array: Any, op: str = "sum") -> None:
        host = np.ascontiguousarray(to_numpy(array))
        self.inner.allreduce(host, op)
        array[...] = get_array_module(array).asarray(host)

    def iallreduce(self, array: Any, what: str = "allreduce") -> Handle:
        self.allreduce(array)
        return Handle()


def cuda_allreduce(comm: Communicator, array: Any, op: str) -> None:
    """``all_reduce`` of a CUDA array: NCCL when CuPy has it, else through the host."""
    staged = nccl_for(comm, get_array_module(array))
    if array.flags.c_contiguous:
        staged.allreduce(array, op)
    else:
        flat = get_array_module(array).ascontiguousarray(array)
        staged.allreduce(flat, op)
        array[...] = flat
