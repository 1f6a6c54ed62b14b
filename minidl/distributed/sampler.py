"""DistributedSampler: each rank's disjoint share of a dataset's indices, reshuffled per
epoch from (seed, epoch), for ``DataLoader(dataset, batch_size, sampler=...)``."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .world import get_rank, get_world_size

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """The indices of rank ``rank``'s shard of ``dataset`` for the current epoch.

    Epoch e visits ``order = permutation(len(dataset))`` drawn from ``(seed, e)`` (the same
    on every rank; ``arange`` without ``shuffle``), and rank r takes ``order[r::world]``.
    With a per-rank ``batch_size`` b, local batch j of every rank together is then exactly
    ``order[j*b*world:(j+1)*b*world]``: the global batches of one process with batch size
    ``b*world``, whatever the number of ranks. To keep a run's global batch when the rank
    count changes, keep ``batch_size * world_size`` constant.

    Padding (when ``len(dataset)`` is not a multiple of the world size): with ``pad=True``
    (torch's policy, the default) the order is extended by its own first indices to a
    multiple of the world size, so every rank has the same number of samples and a few are
    seen twice per epoch; ``drop_last=True`` drops the tail instead, so a few are not seen.
    With ``pad=False`` no sample is repeated or dropped: shards differ by at most one
    sample and the last global batch is split unevenly (exact under DDP, which weights each
    rank by its samples); every rank must still get the same number of batches, which
    ``check_batch_size`` verifies (the DataLoader calls it).

    ``DataLoader(..., sampler=s)`` calls ``s.set_epoch(e)`` before each epoch itself, and the
    Trainer sets the loader's epoch, so the classic forgotten ``set_epoch`` cannot happen.

        >>> s = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)
        >>> list(s), len(s)
        ([1, 4, 7, 0], 4)
        >>> list(DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False, pad=False))
        [1, 4, 7]
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 pad: bool = True) -> None:
        self.num_replicas = get_world_size() if num_replicas is None else int(num_replicas)
        self.rank = get_rank() if rank is None else int(rank)
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, num_replicas), got "
                             f"rank={self.rank}, num_replicas={self.num_replicas}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DistributedSampler: seed must be a non-negative int, got {seed!r}")
        self.dataset, self.shuffle, self.seed = dataset, bool(shuffle), int(seed)
        self.drop_last, self.pad = bool(drop_last), bool(pad)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from the next iteration on."""
        self.epoch = int(epoch)

    def _total(self) -> int:
        """Indices taken from the (padded or cut) order, over all ranks."""
        n, w = len(self.dataset), self.num_replicas
        if self.drop_last:
            return n - n % w
        return -(-n // w) * w if self.pad else n

    def __len__(self) -> int:
        """This rank's number of samples per epoch."""
        total = self._total()
        return max(0, -(-(total - self.rank) // self.num_replicas))

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch (int64)."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle \
            else np.arange(n)
        total = self._total()
        if total > n:   # pad with the order's own head (cycling if the dataset is tiny)
            order = np.concatenate([order, np.resize(order, total - n)])
        return order[:total][self.rank::self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def check_batch_size(self, batch_size: int, drop_last: bool = False) -> None:
        """Raise if ranks would get different numbers of batches of ``batch_size`` (one
        would wait for the others at a collective that never comes)."""
        total = self._total()
        w = self.num_replicas
        sizes = [max(0, -(-(total - r) // w)) for r in range(w)]
        batches = {s // batch_size if drop_last else -(-s // batch_size) for s in sizes}
        if len(batches) > 1:
            raise ValueError(f"DistributedSampler(pad=False): shards of {sizes} samples give "
                             f"ranks different numbers of batches of {batch_size}; use "
                             f"pad=True, drop_last=True or a batch size that divides them evenly")

    @property
    def rng_stream(self) -> tuple[int, ...]:
        """Extra entropy for this rank's augmentation draws (empty for one process, so a
        one-process run draws what it drew without a sampler)."""
        return (self.rank,) if self.num_replicas > 1 else ()

    def __repr__(self) -> str:
        return (f"DistributedSampler({len(self.dataset)} samples, rank={self.rank}, "
                f"num_replicas={self.num_replicas}, shuffle={self.shuffle}, seed={self.seed}, "
                f"epoch={self.epoch}, pad={self.pad}, drop_last={self.drop_last})")
