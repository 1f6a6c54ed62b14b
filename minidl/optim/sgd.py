"""SGD: stochastic gradient descent with (Nesterov) momentum and L2 weight decay."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer, _check_torch_options, _decayed, _signed

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch's formulation).

    ``g += weight_decay * p``; with momentum ``buf = momentum * buf + (1 - dampening) * g``
    (``buf = g`` on the first step), then ``g = g + momentum * buf`` (Nesterov) or
    ``g = buf``; finally ``p -= lr * g``. ``maximize=True`` ascends (``g = -grad`` first).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 maximize: bool = False, **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        if momentum < 0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        lr, momentum, damp = group["lr"], group["momentum"], group["dampening"]
        buf = first = None
        if momentum:
            buf = state.get("momentum_buffer")
            first = buf is None
            if first:
                buf = state["momentum_buffer"] = get_array_module(p.data).empty_like(p.data)
        for pd, gd, bd, t1, t2 in self._slices([p.data, g, buf], 2):
            xp = get_array_module(pd)
            d = _decayed(pd, _signed(gd, group["maximize"], t1), group["weight_decay"], t1, t2)
            if momentum:
                if first:
                    xp.copyto(bd, d)
                else:
                    bd *= momentum
                    if damp:
                        bd += xp.multiply(d, 1.0 - damp, out=t2)
                    else:
                        bd += d
                if group["nesterov"]:
                    d = xp.add(d, xp.multiply(bd, momentum, out=t2), out=t1)
                else:
                    d = bd
            pd -= xp.multiply(d, lr, out=t2)
