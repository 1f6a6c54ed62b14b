"""Adagrad: gradients scaled by the root of their accumulated squares, with lr decay."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer, _check_torch_options, _decayed, _signed

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011): ``sum += g^2; p -= clr * g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (t-1) * lr_decay)``; ``maximize=True`` ascends (``g = -grad``)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, maximize: bool = False,
                 **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        if lr_decay < 0 or initial_accumulator_value < 0:
            raise ValueError(f"Adagrad: invalid lr_decay {lr_decay} or "
                             f"initial_accumulator_value {initial_accumulator_value}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["sum"] = xp.full(p.shape, group["initial_accumulator_value"], dtype=p.dtype)
        state["step"] += 1
        clr = group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])
        for pd, gd, s, t1, t2, t3 in self._slices([p.data, g, state["sum"]], 3):
            d = _decayed(pd, _signed(gd, group["maximize"], t1), group["weight_decay"], t1, t2)
            s += xp.multiply(d, d, out=t2)
            denom = xp.sqrt(s, out=t3)      # clr * (g / (sqrt(sum) + eps))
            denom += group["eps"]
            step = xp.divide(d, denom, out=t3)
            step *= clr
            pd -= step
