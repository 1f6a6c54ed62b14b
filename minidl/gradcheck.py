"""Numerical gradient checks: compare backward against central finite differences in float64.

"Check your backward against finite differences" is how every op in minidl is tested, and it
is public so that students can check their own Functions the same way::

    >>> import minidl as md, minidl.functional as F
    >>> a = md.randn(3, 4, dtype='float64', requires_grad=True)
    >>> b = md.randn(4, 2, dtype='float64', requires_grad=True)
    >>> md.gradcheck(lambda a, b: F.tanh(a @ b), a, b)
    True

The function's output is reduced to a scalar with fixed random weights ``v`` (sum(out * v)),
so one backward pass gives the analytic gradient of every input; the numeric gradient
perturbs each input element by +-eps.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd import Tensor, enable_grad, grad, no_grad
from .backend import get_array_module, to_numpy


class GradcheckError(AssertionError):
    """Raised when analytic and numeric gradients disagree."""


def _float64_leaves(inputs: Sequence[Any]) -> list[Any]:
    leaves = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            # C order: the numeric pass perturbs the leaf through a flat view, which a
            # non-contiguous copy (astype keeps the layout) would silently not be
            leaves.append(Tensor(x.data.astype(np.float64, order="C", copy=True),
                                 requires_grad=x.requires_grad))
        else:
            leaves.append(x)
    return leaves


def _as_outputs(out: Any) -> list[Tensor]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _projection(fn: Callable, leaves: list[Any], weights: list[Any] | None) -> tuple[Tensor, list]:
    outs = _as_outputs(fn(*leaves))
    if weights is None:
        rng = np.random.default_rng(0)
        weights = [get_array_module(o.data).asarray(rng.standard_normal(o.shape)) for o in outs]
    total = None
    for o, w in zip(outs, weights):
        term = (o * Tensor(w)).sum() if o.size else None
        if term is not None:
            total = term if total is None else total + term
    return total, weights


def gradcheck(fn: Callable[..., Any], *inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check the gradients of ``fn(*inputs)`` for every input Tensor with requires_grad.

    Inputs are copied to float64 leaves. Returns True, or raises :class:`GradcheckError`
    naming the input, the worst element, the analytic and the numeric value (returns False
    instead with ``raise_exception=False``).
    """
    leaves = _float64_leaves(inputs)
    targets = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input requires grad")
    total, weights = _projection(fn, leaves, None)
    if total is None or not total.requires_grad:
        analytic = [np.zeros(leaves[i].shape) for i in targets]
    else:
        grads = grad(total, [leaves[i] for i in targets], allow_unused=True)
        analytic = [np.zeros(leaves[i].shape) if g is None else to_numpy(g.data)
                    for i, g in zip(targets, grads)]

    def value() -> float:
        t, _ = _projection(fn, leaves, weights)
        return 0.0 if t is None else float(t.item())

    with no_grad():
        for k, i in enumerate(targets):
            data = leaves[i].data
            numeric = np.zeros(data.shape)
            flat = data.reshape(-1)  # a view: writes go to the leaf
            for j in range(flat.size):
                orig = float(flat[j])
                flat[j] = orig + eps
                plus = value()
                flat[j] = orig - eps
                minus = value()
                flat[j] = orig
                numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
            err = np.abs(analytic[k] - numeric) - (atol + rtol * np.abs(numeric))
            if err.size and err.max() > 0:
                worst = np.unravel_index(int(err.argmax()), err.shape)
                msg = (f"gradcheck: gradient of input {i} (shape {data.shape}) is wrong at "
                       f"index {tuple(int(w) for w in worst)}: analytic "
                       f"{analytic[k][worst]:.8g}, numeric {numeric[worst]:.8g} "
                       f"(atol={atol}, rtol={rtol})")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(fn: Callable[..., Any], *inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
                  rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check second derivatives: gradcheck of ``x -> <grad(<fn(x), v>, x), u>``.

    ``v`` and ``u`` are fixed random weights, so this exercises every backward written with
    minidl ops (``create_graph=True``).
    """
    leaves = _float64_leaves(inputs)
    targets = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    rng = np.random.default_rng(1)
    directions = {i: rng.standard_normal(leaves[i].shape) for i in targets}
    weights_box: list = [None]

    @enable_grad()  # the numeric pass of gradcheck runs under no_grad; this needs a graph
    def first_derivative(*xs: Any) -> Tensor:
        total, weights_box[0] = _projection(fn, list(xs), weights_box[0])
        if total is None or not total.requires_grad:
            return Tensor(np.zeros(()))
        grads = grad(total, [xs[i] for i in targets], create_graph=True, allow_unused=True)
        out = None
        for i, g in zip(targets, grads):
            if g is None:
                continue
            u = Tensor(get_array_module(g.data).asarray(directions[i]))
            term = (g * u).sum()
            out = term if out is None else out + term
        return Tensor(np.zeros(())) if out is None else out

    return gradcheck(first_derivative, *leaves, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
