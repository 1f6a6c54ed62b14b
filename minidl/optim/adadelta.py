"""Adadelta: steps scaled by the ratio of running RMS of past updates and of gradients."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer, _check_torch_options, _decayed, _signed

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012), torch's form (with its ``lr`` on the update).

    ``v = rho*v + (1-rho)*g^2``; ``delta = sqrt(u + eps) / sqrt(v + eps) * g``;
    ``u = rho*u + (1-rho)*delta^2``; ``p -= lr * delta``. ``weight_decay`` is L2 on the
    gradient; ``maximize=True`` ascends (``g = -grad`` first).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9,
                 eps: float = 1e-6, weight_decay: float = 0.0, *,
                 maximize: bool = False, **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        if not 0.0 <= rho <= 1.0 or eps < 0:
            raise ValueError(f"Adadelta: rho must be in [0, 1] and eps >= 0, got rho {rho}, "
                             f"eps {eps}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        rho, eps = group["rho"], group["eps"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            state["acc_delta"] = xp.zeros_like(p.data)
        state["step"] += 1
        arrays = [p.data, g, state["square_avg"], state["acc_delta"]]
        for pd, gd, sq, acc, t1, t2, t3 in self._slices(arrays, 3):
            d = _decayed(pd, _signed(gd, group["maximize"], t1), group["weight_decay"], t1, t2)
            sq *= rho
            t2 = xp.multiply(d, d, out=t2)
            t2 *= 1.0 - rho
            sq += t2
            std = xp.add(sq, eps, out=t2)           # sqrt(v + eps)
            xp.sqrt(std, out=std)
            delta = xp.add(acc, eps, out=t3)        # sqrt(u + eps) / std * g
            xp.sqrt(delta, out=delta)
            delta /= std
            delta *= d
            acc *= rho
            t2 = xp.multiply(delta, delta, out=t2)
            t2 *= 1.0 - rho
            acc += t2
            pd -= xp.multiply(delta, group["lr"], out=t2)
