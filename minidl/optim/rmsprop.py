"""RMSprop: gradients scaled by a running root mean square (centered, with momentum)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer, _check_torch_options, _decayed, _signed

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), torch's form.

    ``v = alpha*v + (1-alpha)*g^2``; ``avg = sqrt(v) + eps`` (centered: ``sqrt(v - mean(g)^2)
    + eps``); with momentum ``buf = momentum*buf + g/avg; p -= lr*buf``, else
    ``p -= lr * g/avg``. ``maximize=True`` ascends (``g = -grad`` first).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, *, maximize: bool = False,
                 **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        if not 0.0 <= alpha or eps < 0 or momentum < 0:
            raise ValueError(f"RMSprop: invalid alpha {alpha}, eps {eps} or momentum {momentum}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        arrays = [p.data, g, state["square_avg"], state.get("momentum_buffer"),
                  state.get("grad_avg")]
        for pd, gd, sq, buf, ga, t1, t2, t3 in self._slices(arrays, 3):
            d = _decayed(pd, _signed(gd, group["maximize"], t1), group["weight_decay"], t1, t2)
            sq *= alpha
            t2 = xp.multiply(d, d, out=t2)
            t2 *= 1.0 - alpha
            sq += t2
            if ga is not None:              # centered: avg = sqrt(sq - ga^2) + eps
                ga *= alpha
                ga += xp.multiply(d, 1.0 - alpha, out=t2)
                avg = xp.subtract(sq, xp.multiply(ga, ga, out=t2), out=t3)
                xp.sqrt(avg, out=avg)
            else:                           # avg = sqrt(sq) + eps
                avg = xp.sqrt(sq, out=t3)
            avg += eps
            if buf is not None:
                buf *= momentum
                buf += xp.divide(d, avg, out=t2)
                pd -= xp.multiply(buf, group["lr"], out=t2)
            else:
                step = xp.divide(d, avg, out=t2)
                step *= group["lr"]
                pd -= step
