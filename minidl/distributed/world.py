"""The process group: init, rank and world size, barrier, all_reduce, per-rank seeds, and
what happens when one rank fails (the whole job aborts, with the rank and the error printed).

Nothing here imports mpi4py unless the process was started by an MPI launcher (or ``init()``
is called): a script without MPI sees a world of one process and runs unchanged.
"""
from __future__ import annotations

import atexit
import os
import sys
import traceback
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module
from ..backend import manual_seed as _seed_backend
from .comm import CollectiveTimeout, Communicator, MPICommunicator, SingleProcess

__all__ = ["init", "is_initialized", "get_rank", "get_world_size", "barrier", "all_reduce",
           "world", "launched_world_size", "manual_seed", "rank_seed", "is_main_process",
           "mpi_available"]

# What MPI launchers put in each rank's environment: MPICH/Intel MPI (Hydra), Open MPI, Slurm.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")
DEFAULT_TIMEOUT = 300.0

_world: Communicator | None = None
_initialized = False


def launched_world_size() -> int:
    """The number of ranks the launcher started (1 when not started by one), read from the
    environment without importing MPI."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def mpi_available() -> tuple[str | None, str | None]:
    """(mpi4py version, the MPI library's one-line version), None where absent. Importing
    ``mpi4py.MPI`` initialises MPI (as a world of one without a launcher): for reports like
    ``minidl info``, not for library code that wants to stay MPI-free."""
    try:
        import mpi4py  # noqa: PLC0415
    except ImportError:
        return None, None
    try:
        from mpi4py import MPI  # noqa: PLC0415

        library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
    except Exception as e:  # a wheel without a working MPI library
        library = f"unusable ({type(e).__name__}: {e})"
    return mpi4py.__version__, library


def init(timeout: float | None = None) -> Communicator:
    """Join the job's process group (idempotent) and return its communicator.

    Under ``mpiexec -n N`` this is MPI's world of N ranks; otherwise a world of one process.
    With more than one rank an uncaught exception on any rank aborts the whole job (after
    printing the rank and the traceback once), and ``timeout`` seconds (default: the
    ``MINIDL_DIST_TIMEOUT`` variable, else 300) bound every collective wait, so a rank that
    exits early turns the others' hang into an abort that names it.
    """
    global _world, _initialized
    if _world is not None:
        _initialized = True
        return _world
    if timeout is None:
        timeout = float(os.environ.get("MINIDL_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if timeout <= 0:
        raise ValueError(f"distributed.init: timeout must be > 0 seconds, got {timeout}")
    launched = launched_world_size()
    try:
        from mpi4py import MPI  # noqa: PLC0415 - lazily, only for an MPI job
    except ImportError:
        if launched > 1:
            raise RuntimeError(f"distributed.init: started as one of {launched} MPI ranks, "
                               f"but mpi4py is not installed; pip install 'minidl[mpi]'") from None
        MPI = None
    if MPI is None or MPI.COMM_WORLD.Get_size() == 1:
        _world = SingleProcess()
    else:
        _world = MPICommunicator(MPI.COMM_WORLD, timeout)
        _install_fault_handlers(_world)
    _initialized = True
    return _world


def is_initialized() -> bool:
    """True once :func:`init` has run (explicitly or through a collective under MPI)."""
    return _initialized


def world() -> Communicator:
    """The job's communicator: :func:`init`'s under an MPI launcher, else the one process."""
    if _world is not None:
        return _world
    if launched_world_size() > 1:
        return init()
    return SingleProcess()


def get_rank() -> int:
    """This process's rank, 0 ... world size - 1 (0 without MPI)."""
    return world().rank


def get_world_size() -> int:
    """The number of ranks in the job (1 without MPI)."""
    return world().size


def is_main_process() -> bool:
    """True on rank 0, the rank that prints, logs and writes checkpoints."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every rank has arrived (a no-op for one process)."""
    world().barrier()


def all_reduce(x: Tensor | Any, op: str = "sum") -> Tensor | Any:
    """Reduce ``x`` (a Tensor or a NumPy/CuPy array) elementwise over all ranks, in place, and
    return it. ``op``: 'sum', 'max' or 'min'.

    CUDA arrays go through NCCL when CuPy ships it (``nvidia-nccl-cu12``), else through the
    host. Every rank ends with the same values.

        >>> import numpy as np
        >>> all_reduce(np.array([1.0, 2.0]))     # one process: unchanged
        array([1., 2.])
    """
    array = x.data if isinstance(x, Tensor) else x
    comm = world()
    if comm.size == 1:
        comm.allreduce(array, op)   # checks op
        return x
    xp = get_array_module(array)
    if xp is not np:
        from .nccl import cuda_allreduce  # noqa: PLC0415

        cuda_allreduce(comm, array, op)
        return x
    if array.flags.c_contiguous:
        comm.allreduce(array, op)
    else:
        flat = np.ascontiguousarray(array)
        comm.allreduce(flat, op)
        array[...] = flat
    return x


def rank_seed(seed: int, rank: int | None = None, size: int | None = None) -> int:
    """The seed of ``rank``'s random stream: ``seed`` itself in a world of one process, else
    a stream drawn from (seed, rank), independent of every other rank's."""
    rank = get_rank() if rank is None else rank
    size = get_world_size() if size is None else size
    if size == 1:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def manual_seed(seed: int) -> None:
    """Seed minidl's generators (dropout, initialisers) with this rank's stream (see
    :func:`rank_seed`): runs reproduce, and ranks do not draw the same dropout masks.
    Parameters initialised from it differ per rank until
    :func:`~minidl.distributed.broadcast_parameters` (which DDP calls) makes them equal."""
    _seed_backend(rank_seed(seed))


# ---- failure: one rank fails, the job ends --------------------------------------------------
def _install_fault_handlers(comm: MPICommunicator) -> None:
    exit_comm = comm.dup()

    def abort_on_exception(kind: type, value: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"minidl.distributed: rank {comm.rank} of {comm.size} failed; "
                         f"aborting the job.\n{text}")
        comm.where = "failing"
        comm.abort(1)   # ends this process too

    def check_exit() -> None:
        # Every rank passes here when its script ends. One that ends early (sys.exit, a
        # return) would leave the others waiting forever; this barrier times out instead.
        if sys.excepthook is not abort_on_exception:
            return
        exit_comm.where = comm.where = "at the end of its script (exited)"
        try:
            exit_comm.barrier()
        except CollectiveTimeout as e:
            sys.stderr.write(f"minidl.distributed: rank {comm.rank} reached the end of its "
                             f"script, the other ranks did not; aborting the job.\n{e}\n")
            comm.abort(1)

    sys.excepthook = abort_on_exception
    atexit.register(check_exit)

