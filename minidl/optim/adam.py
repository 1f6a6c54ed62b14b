"""The Adam family: Adam (with AMSGrad), AdamW (decoupled decay), Nadam/NAdam, RAdam, Adamax."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer, _check_torch_options, _decayed, _signed

__all__ = ["Adam", "AdamW", "Adamax", "Nadam", "NAdam", "RAdam"]


def _adam_moments(pd: Any, gd: Any, m: Any, v: Any, lr: float, wd: float, decoupled: bool,
                  b1: float, b2: float, t1: Any, t2: Any, maximize: bool = False) -> Any:
    """Shared by Adam/AdamW, Nadam and RAdam: negate the gradient when maximising, apply
    weight decay, then update the first moment ``m`` and second moment ``v`` in place.
    Returns the gradient so prepared (in ``t1`` or ``gd`` itself; ``t2`` is scratch)."""
    xp = get_array_module(pd)
    gd = _signed(gd, maximize, t1)
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
    the gradient (use AdamW for decoupled decay); ``amsgrad`` keeps the max of v;
    ``maximize=True`` ascends (``g = -grad`` first).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        _check_betas(type(self).__name__, betas, eps)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

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
            _adam_moments(pd, gd, m, v, lr, wd, self._decoupled, b1, b2, t1, t2,
                          group["maximize"])
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
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, **torch_options: Any) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         **torch_options)


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2016), torch's ``NAdam`` with its momentum schedule.

    ``mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay))``; the step mixes the current
    gradient and the momentum: ``p -= lr*(1-mu_t)/(1-prod mu) * g/denom
    + lr*mu_{t+1}/(1-prod mu * mu_{t+1}) * m/denom`` with ``denom = sqrt(v/(1-b2^t)) + eps``;
    ``maximize=True`` ascends.
    """

    def __init__(self, params: Iterable[Any], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False,
                 **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        _check_betas("Nadam", betas, eps)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

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
                              t1, t2, group["maximize"])
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


class RAdam(Optimizer):
    """Rectified Adam (Liu et al. 2020), torch's form: Adam whose adaptive step is switched
    on, and rectified, once the variance of the adaptive rate is tractable.

    ``m``, ``v`` as in Adam; ``rho_inf = 2/(1-b2) - 1``,
    ``rho_t = rho_inf - 2 t b2^t / (1-b2^t)``. If ``rho_t > 5``:
    ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))`` and
    ``p -= lr * m/(1-b1^t) * r_t * sqrt(1-b2^t) / (sqrt(v) + eps)``; otherwise (the first
    few steps) ``p -= lr * m/(1-b1^t)``, plain momentum SGD. ``weight_decay`` is L2 on the
    gradient, or AdamW's ``p *= 1 - lr*wd`` with ``decoupled_weight_decay=True``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False, **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        _check_betas("RAdam", betas, eps)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        bias1, bias2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2 ** t / bias2
        rect = None
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        arrays = [p.data, g, state["exp_avg"], state["exp_avg_sq"]]
        for pd, gd, m, v, t1, t2 in self._slices(arrays, 2):
            _adam_moments(pd, gd, m, v, lr, wd, group["decoupled_weight_decay"], b1, b2,
                          t1, t2, group["maximize"])
            if rect is None:
                step = xp.multiply(m, lr / bias1, out=t2)
            else:                                # (m / (sqrt(v) + eps)) * lr r_t l_t
                denom = xp.sqrt(v, out=t2)
                denom += eps
                step = xp.divide(m, denom, out=t2)
                step *= lr * rect * math.sqrt(bias2) / bias1
            pd -= step


class Adamax(Optimizer):
    """Adamax (Kingma & Ba 2015, section 7), Adam with the infinity norm, torch's form.

    ``m = b1*m + (1-b1)*g``; ``u = max(b2*u, |g| + eps)``; ``p -= lr/(1-b1^t) * m/u``.
    ``weight_decay`` is L2 on the gradient; ``maximize=True`` ascends.
    """

    def __init__(self, params: Iterable[Any], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 **torch_options: Any) -> None:
        _check_torch_options(type(self), torch_options)
        _check_betas("Adamax", betas, eps)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        (b1, b2), eps = group["betas"], group["eps"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_inf"] = xp.zeros_like(p.data)
        state["step"] += 1
        clr = group["lr"] / (1.0 - b1 ** state["step"])
        arrays = [p.data, g, state["exp_avg"], state["exp_inf"]]
        for pd, gd, m, u, t1, t2 in self._slices(arrays, 2):
            d = _decayed(pd, _signed(gd, group["maximize"], t1), group["weight_decay"], t1, t2)
            m *= b1
            m += xp.multiply(d, 1.0 - b1, out=t2)
            u *= b2
            a = xp.abs(d, out=t2)
            a += eps
            xp.maximum(u, a, out=u)
            step = xp.divide(m, u, out=t2)
            step *= clr
            pd -= step
