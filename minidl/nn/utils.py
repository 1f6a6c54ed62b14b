"""Utilities over a module's parameters, as in ``torch.nn.utils``: gradient clipping and
``functional_call``."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..autograd import Tensor
from ..backend import get_array_module
from .module import Module

__all__ = ["clip_grad_norm_", "clip_grad_value_", "functional_call"]


def _with_grads(parameters: Iterable[Tensor] | Tensor) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so their joint norm is at most ``max_norm`` (torch's rule).

    The norm is taken over all gradients as if concatenated into one vector; when it
    exceeds ``max_norm`` every gradient is multiplied by ``max_norm / (norm + 1e-6)``.
    Returns the norm before clipping. Gradients are replaced (``p.grad.data`` rebound), not
    written in place, because gradient arrays may be shared between tensors.
    """
    params = _with_grads(parameters)
    if not params:
        return 0.0
    xp = get_array_module(params[0].grad.data)
    # Partial results stay on the device; one float() at the end synchronises once.
    if norm_type == math.inf:
        norm = float(xp.stack([xp.abs(p.grad.data).max() for p in params]).max())
    else:
        total = sum((xp.abs(p.grad.data.astype(xp.float64)) ** norm_type).sum()
                    for p in params)
        norm = float(total) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(norm):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {norm}")
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for p in params:
            g = p.grad.data
            p.grad.data = g * g.dtype.type(coef)
    return norm


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clip every gradient element into [-clip_value, clip_value] (rebinding, not in place)."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in _with_grads(parameters):
        xp = get_array_module(p.grad.data)
        p.grad.data = xp.clip(p.grad.data, -clip_value, clip_value)


def functional_call(module: Module, tensors: Mapping[str, Tensor], *args: Any,
                    **kwargs: Any) -> Any:
    """Run ``module(*args)`` with some parameters/buffers replaced by the given Tensors.

    ``tensors`` maps dotted names (as in ``named_parameters``) to Tensors; the module is
    restored afterwards. Useful for gradient checks of a layer with respect to its weights:
    ``gradcheck(lambda x, w: functional_call(layer, {"weight": w}, x), x, w)``.
    """
    owners = dict(module.named_modules())
    swapped = []
    try:
        for name, t in tensors.items():
            prefix, _, leaf = name.rpartition(".")
            owner = owners.get(prefix)
            if owner is None:
                raise KeyError(f"functional_call: no submodule {prefix!r} for {name!r}")
            for reg in (owner._parameters, owner._buffers):
                if leaf in reg:
                    swapped.append((reg, leaf, reg[leaf]))
                    reg[leaf] = t
                    break
            else:
                raise KeyError(f"functional_call: {name!r} is not a parameter or buffer of "
                               f"{type(module).__name__}")
        return module(*args, **kwargs)
    finally:
        for reg, leaf, old in reversed(swapped):
            reg[leaf] = old
