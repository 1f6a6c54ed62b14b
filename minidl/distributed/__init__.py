"""Data-parallel training on MPI (mpi4py), with NCCL through CuPy for CUDA arrays.

Start N copies of a script with ``mpiexec -n N python train.py`` (or ``minidl launch -n N --
python train.py``); each copy is a rank. Wrap the model in :class:`DistributedDataParallel`
and give the loader a :class:`DistributedSampler`: every rank then trains on its share of
each global batch and ends every step with the same weights as one process on the whole
batch. Without MPI every name here works as a world of one process, so the same script runs
unchanged as one process.

    >>> import minidl.distributed as dist
    >>> dist.get_rank(), dist.get_world_size()    # no MPI launcher here
    (0, 1)

See docs/distributed.md.
"""
from .comm import CollectiveTimeout, Communicator, MPICommunicator, SingleProcess
from .ddp import (
    DistributedDataParallel,
    broadcast_parameters,
    broadcast_state,
)
from .sampler import DistributedSampler
from .sync_bn import SyncBatchNorm, convert_sync_batchnorm
from .world import (
    all_reduce,
    barrier,
    get_rank,
    get_world_size,
    init,
    is_initialized,
    is_main_process,
    launched_world_size,
    manual_seed,
    mpi_available,
    rank_seed,
    world,
)

__all__ = [
    "init", "is_initialized", "get_rank", "get_world_size", "is_main_process", "barrier",
    "all_reduce", "world", "launched_world_size", "mpi_available", "manual_seed", "rank_seed",
    "broadcast_parameters", "broadcast_state", "DistributedDataParallel", "DistributedSampler",
    "SyncBatchNorm", "convert_sync_batchnorm", "Communicator", "SingleProcess",
    "MPICommunicator", "CollectiveTimeout",
]
