"""The Adam family: Adam (with AMSGrad), AdamW (decoupled decay) and Nadam/NAdam."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer, _decayed

__all__ = ["Adam", "AdamW", "Nadam", "NAdam"]


def _adam_moments(pd: Any, gd: Any, m: Any, v: Any, lr: float, wd: float, decoupled: bool,
                  b1: float, b2: float, t1: Any, t2: Any) -> Any:
    """Shared by Adam/AdamW and Nadam: apply weight decay, then update the first moment ``m``
    and second moment ``v`` in place. Returns the decayed gradient (``t2`` is scratch)."""
    xp = get_array_module(pd)
    if decoupled:
        pd *= 1.0 - lr * wd
        d = gd
    else:
        d = _decayed(pd, gd, wd, t1, t2)
    m *= b1
    m += xp.multiply(d, 1.0 - b1, out=t2)
    v *= b2
    t2 = xp.multiply(d, d, out=t2)
    t2 *= 1.0 - b2
    v += t2
    return d


def _check_betas(name: str, betas: Any, eps: float) -> None:
    b = tuple(betas)
    if len(b) != 2 or not all(0.0 <= x < 1.0 for x in b):
        raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
    if eps < 0:
        raise ValueError(f"{name}: invalid eps {eps}")


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), torch's form.

    ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g^2``;
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``. ``weight_decay`` is L2 added to
    the gradient (use AdamW for decoupled decay); ``amsgrad`` keeps the max of v.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        _check_betas(type(self).__name__, betas, eps)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    _decoupled = False

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        step_size = lr / (1.0 - b1 ** t)
        bias2 = math.sqrt(1.0 - b2 ** t)
        arrays = [p.data, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq")]
        for pd, gd, m, v, vmax, t1, t2 in self._slices(arrays, 2):
            _adam_moments(pd, gd, m, v, lr, wd, self._decoupled, b1, b2, t1, t2)
            if vmax is not None:
                xp.maximum(vmax, v, out=vmax)
                v = vmax
            denom = xp.sqrt(v, out=t2)          # sqrt(v) / sqrt(1 - b2^t) + eps
            denom /= bias2
            denom += eps
            step = xp.divide(m, denom, out=t2)  # step_size * (m / denom)
            step *= step_size
            pd -= step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): ``p *= 1 - lr*wd`` first."""

    _decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2016), torch's ``NAdam`` with its momentum schedule.

    ``mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay))``; the step mixes the current
    gradient and the momentum: ``p -= lr*(1-mu_t)/(1-prod mu) * g/denom
    + lr*mu_{t+1}/(1-prod mu * mu_{t+1}) * m/denom`` with ``denom = sqrt(v/(1-b2^t)) + eps``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False) -> None:
        _check_betas("Nadam", betas, eps)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["mu_product"] = 1.0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        decay = group["momentum_decay"]
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * decay))
        state["mu_product"] *= mu
        mu_product = state["mu_product"]
        coef_g = lr * (1.0 - mu) / (1.0 - mu_product)
        coef_m = lr * mu_next / (1.0 - mu_product * mu_next)
        bias2 = 1.0 - b2 ** t
        arrays = [p.data, g, state["exp_avg"], state["exp_avg_sq"]]
        for pd, gd, m, v, t1, t2, t3 in self._slices(arrays, 3):
            d = _adam_moments(pd, gd, m, v, lr, wd, group["decoupled_weight_decay"], b1, b2,
                              t1, t2)
            denom = xp.divide(v, bias2, out=t3)  # sqrt(v / (1 - b2^t)) + eps
            xp.sqrt(denom, out=denom)
            denom += eps
            step = xp.divide(d, denom, out=t2)
            step *= coef_g
            pd -= step
            step = xp.divide(m, denom, out=t2)
            step *= coef_m
            pd -= step


NAdam = Nadam  # torch's spelling
