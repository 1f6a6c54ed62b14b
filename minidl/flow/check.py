"""Gradient-check a whole model, so that a measured vanishing gradient can be trusted.

    >>> import minidl as md, minidl.nn as nn
    >>> from minidl.flow.check import gradcheck_model
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2)).double()
    >>> gradcheck_model(net, md.randn(5, 3, dtype="float64"), md.tensor([0, 1, 1, 0, 1]))
    True
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..gradcheck import gradcheck

__all__ = ["gradcheck_model", "numeric_grad"]


@contextlib.contextmanager
def _swapped(model: Any, names: list[str], tensors: tuple[Tensor, ...]) -> Iterator[None]:
    """Let the model's forward use ``tensors`` in place of its parameters ``names``.

    Writes the module's parameter registry directly because gradcheck's leaves are plain
    Tensors, which ``Module.__setattr__`` rightly refuses as parameters; restored on exit.
    """
    modules = dict(model.named_modules())
    saved = []
    try:
        for name, t in zip(names, tensors):
            owner, _, leaf = name.rpartition(".")
            m = modules[owner]
            saved.append((m, leaf, m._parameters[leaf]))
            m._parameters[leaf] = t
        yield
    finally:
        for m, leaf, p in reversed(saved):
            m._parameters[leaf] = p


def _loss_fn(model: Any, x: Any, y: Any, loss: Callable | None, names: list[str]) -> Callable:
    if loss is None:
        loss = F.cross_entropy

    def fn(*ws: Tensor) -> Tensor:
        with _swapped(model, names, ws):
            return loss(model(x), y)
    return fn


def gradcheck_model(model: Any, x: Any, y: Any, loss: Callable | None = None,
                    params: list[str] | None = None, eps: float = 1e-6, atol: float = 1e-8,
                    rtol: float = 1e-4) -> bool:
    """Check ``d loss(model(x), y) / d p`` for every trainable parameter ``p`` (or the
    dotted ``params`` names) against central finite differences, in float64.

    ``x`` should be float64 and the model converted with ``model.double()``: the inputs are
    copied to float64, but a float32 layer would round them back. The default tolerances
    are tight (``atol=1e-8``) so that a gradient that vanished to 1e-12 is confirmed to be
    tiny by the numbers too, not just by the backward pass. Raises
    :class:`minidl.GradcheckError` naming the parameter on a mismatch; returns True.
    """
    named = dict(model.named_parameters())
    names = params or [n for n, p in named.items() if p.requires_grad]
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"gradcheck_model: no parameters named {unknown}")
    fn = _loss_fn(model, x, y, loss, names)
    try:
        return gradcheck(fn, *[named[n] for n in names], eps=eps, atol=atol, rtol=rtol)
    except AssertionError as e:
        raise type(e)(f"{e} (input i is parameter {names!r}[i])") from None


def numeric_grad(model: Any, x: Any, y: Any, name: str, loss: Callable | None = None,
                 eps: float = 1e-6) -> np.ndarray:
    """The central-difference gradient of ``loss(model(x), y)`` with respect to the
    parameter ``name``, computed without autograd (float64 model expected)."""
    if loss is None:
        loss = F.cross_entropy
    data = dict(model.named_parameters())[name].data
    out = np.zeros(data.shape)
    with no_grad():
        for idx in np.ndindex(*data.shape):
            orig = float(data[idx])
            data[idx] = orig + eps
            plus = float(loss(model(x), y).item())
            data[idx] = orig - eps
            minus = float(loss(model(x), y).item())
            data[idx] = orig
            out[idx] = (plus - minus) / (2 * eps)
    return out
