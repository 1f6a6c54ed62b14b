"""Keras's optimizers with Keras's argument names, defaults and update rules.

``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``, ``Adam(learning_rate=0.001,
beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False)``, ``AdamW`` (weight_decay=0.004),
``Nadam(0.001, 0.9, 0.999, 1e-7)``, ``RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0,
epsilon=1e-7, centered=False)``, ``Adagrad(learning_rate=0.001,
initial_accumulator_value=0.1, epsilon=1e-7)``; every one takes ``weight_decay`` (decoupled:
``w -= lr * weight_decay * w`` before the step), ``clipnorm`` (per weight), ``clipvalue`` and
``global_clipnorm``, as Keras's base optimizer does. ``learning_rate`` may be a schedule of
:mod:`keras.optimizers.schedules <minidl.keras.schedules>` (ExponentialDecay, ...).

They are :mod:`minidl.optim` optimizers (subclasses of ``optim.SGD``, ``optim.Adam``, ...),
created without parameters as in Keras and bound to the model's by ``compile``. The rules are
Keras 3's, which differ from torch's where epsilon sits: Keras's Adam divides by
``sqrt(v) + epsilon`` with the bias correction folded into the step size
(``lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``), torch's by ``sqrt(v / (1 - beta_2^t)) + eps``;
Keras's RMSprop and Adagrad put epsilon inside the square root; Keras's SGD momentum keeps
``velocity = momentum * velocity - lr * g`` (torch's keeps the gradient sum, which differs
once the learning rate changes).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import optim
from ..backend import get_array_module
from . import schedules

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Nadam", "RMSprop", "Adagrad", "get",
           "schedules"]

_UNSUPPORTED = ("use_ema", "loss_scale_factor", "gradient_accumulation_steps")


class Optimizer:
    """Keras's optimizer behaviour, mixed into the minidl optimiser classes below."""

    def _keras_init(self, learning_rate: Any, hyper: dict[str, Any], weight_decay: Any,
                    clipnorm: Any, clipvalue: Any, global_clipnorm: Any, name: str | None,
                    kwargs: dict[str, Any]) -> None:
        cls = type(self).__name__
        for key in _UNSUPPORTED:
            if kwargs.pop(key, None) not in (None, False):
                raise ValueError(f"{cls}: {key} is not supported by minidl")
        kwargs.pop("ema_momentum", None)
        kwargs.pop("ema_overwrite_frequency", None)
        if kwargs:
            raise TypeError(f"{cls}: unexpected keyword argument(s) {sorted(kwargs)}")
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{cls}: pass at most one of clipnorm, clipvalue, global_clipnorm")
        # A schedule (keras.optimizers.schedules) is a function of the number of updates so
        # far; the group's lr then follows it, step by step.
        self.schedule = learning_rate if callable(learning_rate) else None
        lr = learning_rate(0) if self.schedule is not None else learning_rate
        self.defaults = dict(lr=float(lr), weight_decay=float(weight_decay or 0.0),
                             iterations=0, **hyper)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict = {}
        self._scratch: dict = {}
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.name = name or cls.lower()

    # ---- Keras's names ---------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self.param_groups)

    def build(self, params: Iterable[Any]) -> None:
        """Bind to ``params`` (``compile`` does this with the model's parameters)."""
        params = list(params)
        if self.built:
            mine = {id(p) for g in self.param_groups for p in g["params"]}
            if mine != {id(p) for p in params}:
                raise ValueError(f"{type(self).__name__}: this optimizer is already bound to "
                                 f"another model's weights; create a new one per model")
            return
        self.add_param_group({"params": params})

    @property
    def learning_rate(self) -> float:
        """The learning rate (settable: ``model.optimizer.learning_rate = 1e-4``); under a
        schedule, as in Keras, the one the next update uses: ``schedule(iterations)``."""
        if self.schedule is not None:
            return float(self.schedule(self.iterations))
        return self.param_groups[0]["lr"] if self.built else self.defaults["lr"]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise ValueError(f"{type(self).__name__}: the learning rate follows a schedule; "
                             f"it cannot be set")
        self.defaults["lr"] = float(value)
        for g in self.param_groups:
            g["lr"] = float(value)

    lr = learning_rate

    @property
    def iterations(self) -> int:
        """Optimisation steps taken."""
        return self.param_groups[0]["iterations"] if self.built else 0

    # ---- the step --------------------------------------------------------------------------
    def _grads(self, params: list[Any]) -> list[Any]:
        """The gradients to apply: clipped as Keras clips (never the user's arrays in place)."""
        grads = [p.grad.data for p in params]
        if self.clipvalue is not None:
            c = float(self.clipvalue)
            grads = [get_array_module(g).clip(g, -c, c) for g in grads]
        elif self.clipnorm is not None:
            out = []
            for g in grads:
                n = float(get_array_module(g).sqrt((g * g).sum()))
                out.append(g * (float(self.clipnorm) / n) if n > self.clipnorm else g)
            grads = out
        elif self.global_clipnorm is not None and grads:
            n = math.sqrt(sum(float((g * g).sum()) for g in grads))
            if n > self.global_clipnorm:
                grads = [g * (float(self.global_clipnorm) / n) for g in grads]
        return grads

    def step(self) -> None:
        """One Keras update of every parameter with a gradient, then its constraint."""
        if not self.built:
            raise RuntimeError(f"{type(self).__name__}: not bound to any weights; pass it to "
                               f"model.compile(optimizer=...)")
        for group in self.param_groups:
            if self.schedule is not None:
                group["lr"] = float(self.schedule(group["iterations"]))
            group["iterations"] += 1
            params = [p for p in group["params"] if p.grad is not None]
            for p, g in zip(params, self._grads(params)):
                if g.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: gradient {g.shape} does not match "
                                     f"parameter {p.shape}")
                if group["weight_decay"]:
                    p.data -= p.data * (group["lr"] * group["weight_decay"])
                self._keras_update(p, g.astype(p.dtype, copy=False),
                                   self.state.setdefault(p, {}), group, group["iterations"])
                constraint = getattr(p, "constraint", None)
                if constraint is not None:
                    p.data = constraint(p.data)

    def _keras_update(self, p: Any, g: Any, state: dict, group: dict, t: int) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The hyper-parameters, by Keras's names where they exist."""
        cfg = {k: v for k, v in self.defaults.items() if k not in ("lr", "iterations")}
        return {"name": self.name, "learning_rate": self.learning_rate, **cfg}


def _zeros(state: dict, key: str, p: Any, fill: float = 0.0) -> Any:
    if key not in state:
        xp = get_array_module(p.data)
        state[key] = xp.full(p.shape, fill, dtype=p.dtype)
    return state[key]


class SGD(Optimizer, optim.SGD):
    """``w -= lr * g``; with momentum ``v = momentum * v - lr * g; w += v`` (Nesterov:
    ``w += momentum * v - lr * g``)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SGD: momentum must be a float in [0, 1], got {momentum}")
        self._keras_init(learning_rate, dict(momentum=float(momentum), nesterov=bool(nesterov)),
                         weight_decay, clipnorm, clipvalue, global_clipnorm, name, kwargs)

    def _keras_update(self, p, g, state, group, t):
        lr, mom = group["lr"], group["momentum"]
        if not mom:
            p.data -= g * lr
            return
        v = _zeros(state, "momentum", p)
        v *= mom
        v -= g * lr
        p.data += (v * mom - g * lr) if group["nesterov"] else v


class Adam(Optimizer, optim.Adam):
    """``m += (g - m)(1 - b1)``; ``v += (g^2 - v)(1 - b2)``;
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)`` (AMSGrad: the running
    max of v)."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        self._keras_init(learning_rate, dict(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                             amsgrad=amsgrad),
                         weight_decay, clipnorm, clipvalue, global_clipnorm, name, kwargs)

    def _keras_update(self, p, g, state, group, t):
        xp = get_array_module(p.data)
        b1, b2 = group["beta_1"], group["beta_2"]
        m, v = _zeros(state, "momentum", p), _zeros(state, "velocity", p)
        alpha = group["lr"] * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        m += (g - m) * (1.0 - b1)
        v += (g * g - v) * (1.0 - b2)
        if group["amsgrad"]:
            vhat = _zeros(state, "velocity_hat", p)
            xp.maximum(vhat, v, out=vhat)
            v = vhat
        p.data -= (m * alpha) / (xp.sqrt(v) + group["epsilon"])


class AdamW(Adam):
    """Adam with Keras's default decoupled ``weight_decay=0.004``."""

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay, **kwargs)


class Nadam(Optimizer, optim.Nadam):
    """Keras's Nadam: ``u_t = b1 (1 - 0.5 * 0.96^t)``; ``m_hat = u_{t+1} m / (1 - prod u
    u_{t+1}) + (1 - u_t) g / (1 - prod u)``; ``w -= lr m_hat / (sqrt(v / (1 - b2^t)) +
    epsilon)``."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        self._keras_init(learning_rate, dict(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                             u_product=1.0),
                         weight_decay, clipnorm, clipvalue, global_clipnorm, name, kwargs)

    def step(self) -> None:
        for group in self.param_groups:   # once per step, before the updates (as Keras)
            t = group["iterations"] + 1
            group["u_product"] *= group["beta_1"] * (1.0 - 0.5 * 0.96 ** t)
        super().step()

    def _keras_update(self, p, g, state, group, t):
        xp = get_array_module(p.data)
        b1, b2 = group["beta_1"], group["beta_2"]
        u_t = b1 * (1.0 - 0.5 * 0.96 ** t)
        u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        prod = group["u_product"]
        m, v = _zeros(state, "momentum", p), _zeros(state, "velocity", p)
        m += (g - m) * (1.0 - b1)
        v += (g * g - v) * (1.0 - b2)
        m_hat = m * (u_t1 / (1.0 - prod * u_t1)) + g * ((1.0 - u_t) / (1.0 - prod))
        v_hat = v / (1.0 - b2 ** t)
        p.data -= (m_hat * group["lr"]) / (xp.sqrt(v_hat) + group["epsilon"])


class RMSprop(Optimizer, optim.RMSprop):
    """``v = rho v + (1 - rho) g^2``; ``inc = lr g / sqrt(v + epsilon)`` (centered:
    ``sqrt(v - avg_g^2 + epsilon)``); ``w -= inc`` or, with momentum, ``m = momentum m + inc;
    w -= m``."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 name: str | None = None, **kwargs: Any) -> None:
        self._keras_init(learning_rate, dict(rho=rho, momentum=momentum, epsilon=epsilon,
                                             centered=centered),
                         weight_decay, clipnorm, clipvalue, global_clipnorm, name, kwargs)

    def _keras_update(self, p, g, state, group, t):
        xp = get_array_module(p.data)
        rho = group["rho"]
        v = _zeros(state, "velocity", p)
        v *= rho
        v += (g * g) * (1.0 - rho)
        if group["centered"]:
            a = _zeros(state, "average_gradient", p)
            a *= rho
            a += g * (1.0 - rho)
            denom = v - a * a + group["epsilon"]
        else:
            denom = v + group["epsilon"]
        inc = (g * group["lr"]) / xp.sqrt(denom)
        if group["momentum"] > 0:
            m = _zeros(state, "momentum", p)
            m *= group["momentum"]
            m += inc
            p.data -= m
        else:
            p.data -= inc


class Adagrad(Optimizer, optim.Adagrad):
    """``acc += g^2``; ``w -= lr g / sqrt(acc + epsilon)``, acc starting at
    ``initial_accumulator_value`` (0.1)."""

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        if initial_accumulator_value < 0:
            raise ValueError(f"Adagrad: initial_accumulator_value must be >= 0, got "
                             f"{initial_accumulator_value}")
        self._keras_init(learning_rate, dict(initial_accumulator_value=initial_accumulator_value,
                                             epsilon=epsilon),
                         weight_decay, clipnorm, clipvalue, global_clipnorm, name, kwargs)

    def _keras_update(self, p, g, state, group, t):
        xp = get_array_module(p.data)
        acc = _zeros(state, "accumulator", p, group["initial_accumulator_value"])
        acc += g * g
        p.data -= (g * group["lr"]) / xp.sqrt(acc + group["epsilon"])


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "nadam": Nadam, "rmsprop": RMSprop,
            "adagrad": Adagrad}


def get(identifier: Any) -> Any:
    """An optimizer from a name ('sgd', 'adam', 'adamw', 'nadam', 'rmsprop', 'adagrad', with
    Keras's defaults) or an optimizer instance (a keras or a minidl.optim one)."""
    if isinstance(identifier, optim.Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; expected one of {sorted(_BY_NAME)} or "
                     f"an optimizer instance (keras.optimizers.Adam(...), minidl.optim.SGD(...))")
