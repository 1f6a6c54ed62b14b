"""DataLoader: batches of Tensors on a device, seeded shuffling, optional prefetching."""
from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..autograd import Tensor, tensor
from ..backend import get_array_module, get_default_device, to_device
from .dataset import Dataset, TensorDataset
from .transforms import Transform

__all__ = ["DataLoader"]


def _to_batch_array(a: Any) -> Any:
    """The dtype a model sees: uint8 images -> float32 in [0, 1], other integers -> int64."""
    kind = a.dtype.kind
    if a.dtype == np.uint8 and a.ndim >= 2:
        return a.astype(np.float32) * np.float32(1.0 / 255.0)
    if kind in "iub":
        return a.astype(np.int64, copy=False)
    return a


def _collate(items: list[Any]) -> tuple[Any, ...]:
    """Stack per-item tuples field by field (the slow path, for datasets without get_batch)."""
    items = [it if isinstance(it, tuple) else (it,) for it in items]
    fields = []
    for k in range(len(items[0])):
        column = [it[k].data if isinstance(it[k], Tensor) else it[k] for it in items]
        xp = get_array_module(*column)
        fields.append(xp.stack([xp.asarray(v) for v in column]))
    return tuple(fields)


class DataLoader:
    """Iterate over a dataset in batches of Tensors on ``device``.

    Each batch is a tuple with one Tensor per dataset field (for ``TensorDataset(x, y)``:
    ``(xb, yb)``). ``transform`` (see :mod:`minidl.data.transforms`, or any function of the
    batch array) is applied to the first field, on the target device, after the batch is
    gathered. Dtypes: uint8 image batches
    (ndim >= 2) become float32 in [0, 1], other integer arrays (labels) int64, floating
    arrays keep their dtype.

    Shuffling: epoch ``e`` visits the samples in the order of a permutation drawn from
    ``(seed, e)``, and random transforms draw from ``(seed, e, batch number)``; so a run is
    reproducible, every epoch is reshuffled, and ``state_dict()`` / ``load_state_dict()``
    (seed, epoch, batches already delivered) let a resumed run continue exactly, with or
    without prefetching. Without a ``seed`` one is drawn at construction (and kept in the
    state dict).

    Array-backed datasets (with ``get_batch``, like TensorDataset) are gathered with one
    fancy index per array; other datasets are read item by item and stacked. A tuple of
    arrays is accepted as shorthand for ``TensorDataset(*arrays)``.

    ``sampler`` (as torch's: anything with ``__len__`` that iterates over sample indices,
    e.g. ``minidl.distributed.DistributedSampler``) replaces the loader's own order; a
    sampler with ``set_epoch`` is set to each epoch before it runs.

    ``prefetch=k`` prepares up to ``k`` batches ahead in a background thread (gather,
    transfer, transform), overlapping data work with the training step.

    >>> import numpy as np
    >>> x, y = np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 1])
    >>> loader = DataLoader(TensorDataset(x, y), batch_size=2, shuffle=True, seed=0)
    >>> len(loader), [tuple(xb.shape) for xb, yb in loader]
    (3, [(2, 2), (2, 2), (1, 2)])
    """

    def __init__(self, dataset: Dataset | tuple, batch_size: int = 1, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False, device: str | None = None,
                 prefetch: int = 0, transform: Callable[..., Any] | None = None,
                 sampler: Any = None) -> None:
        if isinstance(dataset, tuple):
            dataset = TensorDataset(*dataset)
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must define __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an int >= 0, got {prefetch!r}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"DataLoader: seed must be a non-negative int or None, got {seed!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {transform!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler is mutually exclusive with shuffle=True (the "
                             "sampler decides the order: pass shuffle=False)")
        if hasattr(sampler, "check_batch_size"):
            sampler.check_batch_size(int(batch_size), bool(drop_last))
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.device = device
        self.prefetch = int(prefetch)
        self.transform = transform
        # Without a seed, draw one from OS entropy, but keep it so state_dict can restore it.
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy
                                                           % (1 << 63))
        self._epoch = 0            # the epoch the next iter() runs
        self._resume_batch = 0     # where that epoch starts (set by load_state_dict)
        # Weak, so that an abandoned iterator (break) is collected and its thread stops.
        self._active: weakref.ref[_EpochIterator] | None = None

    # ---- sizes and orders ----------------------------------------------------------------
    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter(loader)`` runs (counted from 0)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` run epoch ``epoch`` from its first batch."""
        self._epoch, self._resume_batch = int(epoch), 0

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in visiting order (int64, length len(dataset), or
        the sampler's indices: a sampler with ``set_epoch`` is set to ``epoch`` first)."""
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            return np.asarray(list(self.sampler), dtype=np.int64)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, int(epoch), 0]).permutation(n)

    def batch_rng(self, epoch: int, batch: int) -> np.random.Generator:
        """The generator the transform of batch ``batch`` in ``epoch`` draws from."""
        stream = getattr(self.sampler, "rng_stream", ())   # a distributed rank's own draws
        return np.random.default_rng([self.seed, int(epoch), 1, int(batch), *stream])

    # ---- building one batch --------------------------------------------------------------
    def _fetch(self, indices: np.ndarray) -> tuple[Any, ...]:
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is not None:
            return tuple(get_batch(indices))
        return _collate([self.dataset[int(i)] for i in indices])

    def make_batch(self, indices: np.ndarray, device: str,
                   rng: np.random.Generator | None = None) -> tuple[Tensor, ...]:
        """Gather ``indices``, move to ``device``, transform the first field, wrap as Tensors."""
        arrays = [to_device(a, device) for a in self._fetch(indices)]
        if isinstance(self.transform, Transform):
            arrays[0] = self.transform(arrays[0], rng=rng)
        elif self.transform is not None:  # a plain function of the batch
            arrays[0] = self.transform(arrays[0])
        return tuple(tensor(_to_batch_array(a), device=device) for a in arrays)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        epoch, start = self._epoch, self._resume_batch
        self._epoch, self._resume_batch = epoch + 1, 0
        it = _EpochIterator(self, epoch, start, self.device or get_default_device())
        self._active = weakref.ref(it)
        return it

    # ---- resumption ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """Where iteration stands: seed, epoch, and batches of that epoch already delivered.

        During an epoch this is the running epoch and the number of batches handed out so
        far; between epochs it is the next epoch and 0.
        """
        it = self._active() if self._active is not None else None
        epoch, batch = (it.epoch, it.position) if it is not None else (self._epoch,
                                                                          self._resume_batch)
        return {"seed": self.seed, "epoch": epoch, "batch": batch,
                "batch_size": self.batch_size, "num_samples": len(self.dataset),
                "shuffle": int(self.shuffle)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next ``iter()`` resumes at that batch."""
        missing = {"seed", "epoch", "batch"} - set(state)
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state lacks {sorted(missing)}")
        n = state.get("num_samples")
        if n is not None and int(n) != len(self.dataset):
            raise ValueError(f"DataLoader.load_state_dict: state is for a dataset of {int(n)} "
                             f"samples, this one has {len(self.dataset)}")
        bs = state.get("batch_size")
        if bs is not None and int(bs) != self.batch_size and int(state["batch"]) > 0:
            raise ValueError(f"DataLoader.load_state_dict: cannot resume mid-epoch with batch "
                             f"size {self.batch_size}; the state was saved with {int(bs)}")
        if "shuffle" in state and bool(state["shuffle"]) != self.shuffle:
            raise ValueError(f"DataLoader.load_state_dict: state has shuffle="
                             f"{bool(state['shuffle'])}, this loader shuffle={self.shuffle}")
        self.seed = int(state["seed"])
        self._epoch, self._resume_batch = int(state["epoch"]), int(state["batch"])
        self._active = None

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}, device={self.device!r}, prefetch={self.prefetch}, "
                f"transform={self.transform!r})")


_DONE = object()


def _produce(loader: DataLoader, jobs: list[tuple[int, np.ndarray]], epoch: int, device: str,
             q: queue.Queue, stop: threading.Event) -> None:
    """Prefetch thread: build batches in order and queue them; forward any exception."""
    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        for b, idx in jobs:
            if stop.is_set() or not put(loader.make_batch(idx, device, loader.batch_rng(epoch, b))):
                return
        put(_DONE)
    except BaseException as e:  # handed to the consumer, which re-raises it
        put(e)


class _EpochIterator:
    """One pass over the batches of one epoch, optionally fed by a prefetch thread.

    The thread holds no reference to this object, so abandoning the iterator (``break``)
    lets it be collected, which stops the thread.
    """

    def __init__(self, loader: DataLoader, epoch: int, start: int, device: str) -> None:
        self.loader, self.epoch, self.device = loader, epoch, device
        self.position = start           # batches of this epoch delivered so far
        order = loader.order(epoch)
        bs = loader.batch_size
        self.jobs = [(b, order[b * bs:(b + 1) * bs]) for b in range(start, len(loader))]
        self._next_job = 0
        self._thread: threading.Thread | None = None
        if loader.prefetch > 0 and self.jobs:
            self._queue: queue.Queue = queue.Queue(maxsize=loader.prefetch)
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=_produce, args=(loader, self.jobs, epoch, device, self._queue, self._stop),
                name="minidl-prefetch", daemon=True)
            self._thread.start()

    def __iter__(self) -> _EpochIterator:
        return self

    def __len__(self) -> int:
        return len(self.jobs) - self._next_job

    def __next__(self) -> tuple[Tensor, ...]:
        if self._next_job >= len(self.jobs):
            self.close()
            raise StopIteration
        if self._thread is None:
            b, idx = self.jobs[self._next_job]
            batch = self.loader.make_batch(idx, self.device, self.loader.batch_rng(self.epoch, b))
        else:
            batch = self._get()
        self._next_job += 1
        self.position += 1
        return batch

    def _get(self) -> tuple[Tensor, ...]:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():  # type: ignore[union-attr]
                    raise RuntimeError(
                        "DataLoader: the prefetch thread ended without a batch") from None
        if isinstance(item, BaseException):
            self.close()
            raise item
        if item is _DONE:  # cannot happen before the last job; guards against miscounting
            raise RuntimeError("DataLoader: prefetch thread finished early")
        return item

    def close(self) -> None:
        """Stop the prefetch thread (if any) and detach from the loader."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
            self._thread = None
        active = self.loader._active
        if active is not None and active() is self:
            self.loader._active = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
