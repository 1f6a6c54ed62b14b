"""History: the per-epoch figures of a training run (what Trainer.fit and keras fit return)."""
from __future__ import annotations

__all__ = ["History"]


class History(dict):
    """Per-epoch figures: ``history['loss'][i]`` is the mean training loss of epoch i + 1.

    Keys: ``epoch`` (from 1), ``loss``, one per metric (``accuracy``, ``top5``, ...), the
    same with ``val_`` when validating, ``lr`` (learning rate of the epoch) and ``time``
    (seconds). Keras' spelling works too: ``history.history`` holds the losses and metrics
    only, as in Keras (so ``pd.DataFrame(history.history).plot()`` draws what it draws
    there), and ``history.epoch`` lists the epochs from 0, as Keras numbers them.

        >>> h = History()
        >>> h.append({"epoch": 1, "loss": 0.5, "lr": 0.1})
        >>> h.append({"epoch": 2, "loss": 0.25, "lr": 0.1})
        >>> h["loss"], h.history, h.epoch, h.last()
        ([0.5, 0.25], {'loss': [0.5, 0.25]}, [0, 1], {'epoch': 2, 'loss': 0.25, 'lr': 0.1})
    """

    #: the keys minidl records beside Keras' losses and metrics
    BOOKKEEPING = ("epoch", "lr", "time")

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras' ``History.history``: the per-epoch losses and metrics (the same lists)."""
        return {k: v for k, v in self.items() if k not in self.BOOKKEEPING}

    @property
    def epoch(self) -> list[int]:
        """Keras' ``History.epoch``: the epochs of this history counted from 0."""
        return [int(e) - 1 for e in self.get("epoch", [])]

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
