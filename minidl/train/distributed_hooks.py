"""What the Trainer does differently when it runs as one of several ranks (world size > 1):
figures averaged over ranks, output and checkpoints on rank 0, per-rank RNG in checkpoints.

With one process every function here returns its input unchanged, so the Trainer behaves
exactly as without MPI.

- Loss and metrics of a pass are averaged over the ranks, each weighted by its samples: the
  figure of the global batch, identical on every rank, so EarlyStopping, ModelCheckpoint's
  "best" and ReduceLROnPlateau decide the same on all ranks (they stop at the same epoch).
- Progress bars, epoch lines, CSV logs and callback messages come from rank 0 only.
- Checkpoints are written by rank 0, then every rank waits at a barrier, so no rank reads a
  half-written file. They carry every rank's RNG state; a resume with the same number of
  ranks restores each rank's own, one with another number restores rank 0's everywhere.
- A resume reads the file on rank 0 and broadcasts it: the other ranks need no shared disk.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import get_rng_state
from ..distributed import world
from .callbacks import CSVLogger

__all__ = ["prepare", "average_over_ranks", "agreed_signal", "several_ranks", "extra_state",
           "rng_state_for_rank", "save_on_rank0", "load_from_rank0"]

#: the stop signals by code: 0 is none (the codes' maximum over the ranks is the agreement)
_SIGNALS = (None, "SIGINT", "SIGTERM")


def prepare(trainer: Any) -> None:
    """Silence a trainer on every rank but 0: no progress bar or epoch line, no CSV rows,
    no callback messages (the callbacks still run, so their state stays the same)."""
    if world().rank == 0:
        return
    trainer.verbose = 0
    for cb in trainer.callbacks:
        if isinstance(cb, CSVLogger):
            cb.on_train_begin = cb.on_epoch_end = _nothing  # type: ignore[method-assign]
        if hasattr(cb, "verbose"):
            cb.verbose = 0


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def average_over_ranks(figures: dict[str, float], count: int) -> dict[str, float]:
    """``figures`` (means over this rank's ``count`` samples) as means over every rank's
    samples: one sum of (value * count, ..., count) over the ranks, in float64."""
    comm = world()
    if comm.size == 1:
        return figures
    names = list(figures)
    sums = np.array([figures[k] * count for k in names] + [count], dtype=np.float64)
    comm.allreduce(sums)
    total = sums[-1]
    return {k: float(sums[i] / total) if total else float("nan") for i, k in enumerate(names)}


def several_ranks() -> bool:
    """Whether this process is one of several MPI ranks."""
    return world().size > 1


def agreed_signal(received: str | None) -> str | None:
    """The stop signal as every rank sees it: with several ranks one tiny max over the
    ranks (a collective: every rank calls it at the same step boundary), so a SIGINT or
    SIGTERM that reached any rank stops them all at the same step and the save that follows
    is made by all of them together."""
    comm = world()
    if comm.size == 1:
        return received
    code = np.array([_SIGNALS.index(received)], dtype=np.int64)
    comm.allreduce(code, op="max")
    return _SIGNALS[int(code[0])]


def extra_state() -> dict[str, Any]:
    """What a checkpoint adds with several ranks: every rank's RNG state, in rank order
    (a collective: every rank must call it)."""
    comm = world()
    if comm.size == 1:
        return {}
    return {"rng_ranks": comm.allgather_object(get_rng_state()), "world_size": comm.size}


def rng_state_for_rank(state: dict[str, Any]) -> Any:
    """The RNG state this rank resumes with: its own when the checkpoint was written by as
    many ranks as run now, else the checkpoint's (rank 0's)."""
    ranks = state.get("rng_ranks")
    comm = world()
    if ranks is not None and len(ranks) == comm.size:
        return ranks[comm.rank]
    return state["rng"]


def save_on_rank0(state: dict[str, Any], path: str | os.PathLike,
                  write: Callable[[dict[str, Any], Any], None]) -> None:
    """``write(state, path)`` on rank 0 only; then every rank waits for it."""
    comm = world()
    if comm.rank == 0:
        write(state, path)
    comm.barrier()


def load_from_rank0(path: str | os.PathLike,
                    read: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``read(path)`` on rank 0, sent to every rank; an error reading it is raised on all."""
    comm = world()
    if comm.size == 1:
        return read(path)
    result: Any = None
    if comm.rank == 0:
        try:
            result = read(path)
        except Exception as e:  # every rank raises it, instead of rank 0 alone
            result = e
    result = comm.broadcast_object(result, 0)
    if isinstance(result, Exception):
        raise result
    return result
