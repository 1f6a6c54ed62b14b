"""History: the per-epoch figures of a training run."""
from __future__ import annotations

__all__ = ["History"]


class History(dict):
    """Per-epoch figures: ``history['loss'][i]`` is the mean training loss of epoch i + 1.

    Keys: ``epoch`` (from 1), ``loss``, one per metric (``accuracy``, ``top5``, ...), the
    same with ``val_`` when validating, ``lr`` (learning rate of the epoch) and ``time``
    (seconds).
    """

    def append(self, logs: dict[str, float]) -> None:
        """Add one epoch. Lists stay aligned: a key missing in some epochs (validation in
        only some ``fit`` calls) holds NaN there."""
        n = max((len(v) for v in self.values()), default=0)
        for k, v in logs.items():
            self.setdefault(k, [float("nan")] * n).append(v)
        for v in self.values():
            if len(v) == n:
                v.append(float("nan"))

    def last(self) -> dict[str, float]:
        """The figures of the latest epoch."""
        return {k: v[-1] for k, v in self.items() if v}
