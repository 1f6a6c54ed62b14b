"""Optimisers with ``torch.optim``'s update rules, defaults, parameter groups and state dicts.

Every optimiser updates ``p.data`` in place with array arithmetic (NumPy or CuPy, whichever
holds the parameter), skips parameters whose ``grad`` is None (frozen or unused ones), and
after the update applies each parameter's ``constraint`` (set by a layer's
``weight_constraint=``), as Keras does.

    opt = optim.SGD([{"params": backbone.parameters(), "lr": 1e-4},   # fine-tune gently
                     {"params": head.parameters()}], lr=1e-2, momentum=0.9)
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

from ..autograd import Tensor
from ..backend import device_of, get_array_module, to_device, to_numpy

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Nadam", "NAdam", "RMSprop", "Adagrad"]


class _Required:
    def __repr__(self) -> str:
        return "<required>"


required = _Required()


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, state dicts.

    ``params`` is an iterable of Tensors or of dicts ``{'params': ..., 'lr': ...}`` (groups);
    a group's missing hyper-parameters come from ``defaults``. Subclasses implement
    ``_update(p, grad_array, state, group)``.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or "
                            "dicts, got a single Tensor (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (e.g. a smaller lr)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict with "
                            "'params'")
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for p in ps:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: expected Tensors in params, got "
                                f"{type(p).__name__}")
            if p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: can only optimise floating tensors, "
                                f"got dtype {p.dtype} (shape {p.shape})")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        dup = [p.shape for p in ps if id(p) in seen]
        if dup or len({id(p) for p in ps}) != len(ps):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one "
                             f"group (shapes {dup})")
        group["params"] = ps
        for k, v in self.defaults.items():
            if v is required and k not in group:
                raise ValueError(f"{type(self).__name__}: parameter group needs {k!r}")
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        lr = group.get("lr")
        if lr is not None and lr < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {lr}")
        if group.get("weight_decay", 0.0) < 0:
            raise ValueError(f"{type(self).__name__}: invalid weight_decay "
                             f"{group['weight_decay']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (None by default, as torch does)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor(get_array_module(p.data).zeros_like(p.data))

    def step(self) -> None:
        """Update every parameter that has a gradient, then apply its constraint."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                if device_of(g) != device_of(p.data) or g.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: gradient {g.shape} on "
                                     f"{device_of(g)} does not match parameter {p.shape} on "
                                     f"{p.device}")
                self._update(p, g, self.state.setdefault(p, {}), group)
                constraint = getattr(p, "constraint", None)
                if constraint is not None:
                    p.data = constraint(p.data)

    def _update(self, p: Tensor, g: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- state dict ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot for exact resumption: ``{'state': {index: {...}}, 'param_groups': [...]}``.

        Parameters are referred to by their position across groups (as in torch); arrays
        are NumPy copies, so later steps do not change the snapshot.
        """
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            packed["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: (to_numpy(v).copy() if hasattr(v, "shape")
                                           and getattr(v, "ndim", 0) > 0 else v)
                                       for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also one that went through ``minidl.io`` save/load).

        Checks that groups and parameter counts and state shapes match before changing
        anything; arrays are copied to each parameter's device.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: not an optimizer state dict (keys "
                             f"{list(state_dict) if isinstance(state_dict, dict) else '?'})")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the checkpoint has {len(saved_groups)} "
                             f"parameter groups, this optimizer {len(self.param_groups)}")
        params = [p for g in self.param_groups for p in g["params"]]
        for i, (sg, g) in enumerate(zip(saved_groups, self.param_groups)):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has "
                                 f"{len(sg['params'])} parameters in the checkpoint and "
                                 f"{len(g['params'])} here")
        ids = [int(k) for g in saved_groups for k in g["params"]]
        by_index = dict(zip(ids, params))
        new_state: dict[Tensor, dict[str, Any]] = {}
        for k, s in dict(state_dict.get("state", {})).items():
            k = int(k)
            if k not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for parameter {k}, which "
                                 "no group has")
            p = by_index[k]
            restored = {}
            for key, v in s.items():
                if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter "
                                         f"{k} has shape {tuple(v.shape)}, the parameter "
                                         f"{p.shape}")
                    arr = to_device(to_numpy(v), p.device)
                    restored[key] = get_array_module(p.data).array(arr, dtype=p.dtype)
                elif hasattr(v, "shape"):  # 0-d array (e.g. a step count after save/load)
                    restored[key] = v.item()
                else:
                    restored[key] = v
            new_state[p] = restored
        for sg, g in zip(saved_groups, self.param_groups):
            for key, v in sg.items():
                if key != "params":
                    g[key] = tuple(v) if isinstance(g.get(key), tuple) else v
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


def _with_weight_decay(p: Tensor, g: Any, wd: float) -> Any:
    # A new array: the gradient may be shared, so never add into it in place.
    return g + p.data * wd if wd else g


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch's formulation).

    ``g += weight_decay * p``; with momentum ``buf = momentum * buf + (1 - dampening) * g``
    (``buf = g`` on the first step), then ``g = g + momentum * buf`` (Nesterov) or
    ``g = buf``; finally ``p -= lr * g``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 maximize: bool = False) -> None:
        if momentum < 0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        if group["maximize"]:
            g = -g
        g = _with_weight_decay(p, g, group["weight_decay"])
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= momentum
                buf += (1.0 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


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
        if self._decoupled:
            p.data *= 1.0 - lr * wd
        else:
            g = _with_weight_decay(p, g, wd)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = lr / (1.0 - b1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1.0 - b2 ** t) + eps
        p.data -= step_size * (m / denom)


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
        if group["decoupled_weight_decay"]:
            p.data *= 1.0 - lr * wd
        else:
            g = _with_weight_decay(p, g, wd)
        decay = group["momentum_decay"]
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * decay))
        state["mu_product"] *= mu
        mu_product = state["mu_product"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = xp.sqrt(v / (1.0 - b2 ** t)) + eps
        p.data -= (lr * (1.0 - mu) / (1.0 - mu_product)) * (g / denom)
        p.data -= (lr * mu_next / (1.0 - mu_product * mu_next)) * (m / denom)


NAdam = Nadam  # torch's spelling


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), torch's form.

    ``v = alpha*v + (1-alpha)*g^2``; ``avg = sqrt(v) + eps`` (centered: ``sqrt(v - mean(g)^2)
    + eps``); with momentum ``buf = momentum*buf + g/avg; p -= lr*buf``, else
    ``p -= lr * g/avg``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> None:
        if not 0.0 <= alpha or eps < 0 or momentum < 0:
            raise ValueError(f"RMSprop: invalid alpha {alpha}, eps {eps} or momentum {momentum}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        g = _with_weight_decay(p, g, group["weight_decay"])
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        sq = state["square_avg"]
        sq *= alpha
        sq += (1.0 - alpha) * (g * g)
        if group["centered"]:
            ga = state["grad_avg"]
            ga *= alpha
            ga += (1.0 - alpha) * g
            avg = xp.sqrt(sq - ga * ga) + eps
        else:
            avg = xp.sqrt(sq) + eps
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += g / avg
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * (g / avg)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011): ``sum += g^2; p -= clr * g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (t-1) * lr_decay)``."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10) -> None:
        if lr_decay < 0 or initial_accumulator_value < 0:
            raise ValueError(f"Adagrad: invalid lr_decay {lr_decay} or "
                             f"initial_accumulator_value {initial_accumulator_value}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["sum"] = xp.full(p.shape, group["initial_accumulator_value"], dtype=p.dtype)
        state["step"] += 1
        g = _with_weight_decay(p, g, group["weight_decay"])
        clr = group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])
        s = state["sum"]
        s += g * g
        p.data -= clr * (g / (xp.sqrt(s) + group["eps"]))


def _check_betas(name: str, betas: Any, eps: float) -> None:
    b = tuple(betas)
    if len(b) != 2 or not all(0.0 <= x < 1.0 for x in b):
        raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
    if eps < 0:
        raise ValueError(f"{name}: invalid eps {eps}")

