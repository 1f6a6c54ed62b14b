"""Numerical gradient checks: compare backward against central finite differences in float64.

"Check your backward against finite differences" is how every op in minidl is tested, and it
is public so that students can check their own Functions the same way::

    >>> import minidl as md, minidl.functional as F
    >>> a = md.randn(3, 4, dtype='float64', requires_grad=True)
    >>> b = md.randn(4, 2, dtype='float64', requires_grad=True)
    >>> md.gradcheck(lambda a, b: F.tanh(a @ b), a, b)
    True

The function's output is reduced to a scalar with fixed random weights ``v`` (sum(out * v)),
so one backward pass, with ``v`` as the output gradient, gives the analytic gradient of every
input; the numeric gradient perturbs each input element by +-eps. Only the engine is used
(no Tensor operators), so the checks sit just above ``minidl.autograd``.
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


def _float_outputs(out: Any) -> list[Tensor]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _weights_for(outs: list[Tensor], host_weights: list[Any] | None) -> list[Any]:
    """One weight array per output, on its device: the given host arrays, or fixed random ones."""
    if host_weights is None:
        rng = np.random.default_rng(0)
        host_weights = [rng.standard_normal(o.shape) for o in outs]
    return [get_array_module(o.data).asarray(w) for o, w in zip(outs, host_weights)]


def _vjp(outs: list[Tensor], weights: list[Any], wrt: list[Tensor],
         create_graph: bool = False) -> list[Tensor | None]:
    """The gradient of sum_k <outs[k], weights[k]> with respect to each of ``wrt`` (None where
    it does not depend on it): one backward with the weights as output gradients."""
    used = [(o, Tensor(w)) for o, w in zip(outs, weights) if o.requires_grad and o.size]
    if not used:
        return [None] * len(wrt)
    return list(grad([o for o, _ in used], wrt, grad_outputs=[w for _, w in used],
                     create_graph=create_graph, allow_unused=True))


def _projected(outs: list[Tensor], weights: list[Any]) -> float:
    """sum_k <outs[k], weights[k]>, on raw arrays."""
    return float(sum(float((o.data * w).sum()) for o, w in zip(outs, weights) if o.size))


def gradcheck(fn: Callable[..., Any], *inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check the gradients of ``fn(*inputs)`` for every input Tensor with requires_grad.

    Inputs are copied to float64 leaves. Returns True, or raises :class:`GradcheckError`
    naming the input, the worst element, the analytic and the numeric value (returns False
    instead with ``raise_exception=False``).
    """
    return _check(fn, _float64_leaves(inputs), None, eps, atol, rtol, raise_exception)


def _check(fn: Callable[..., Any], leaves: list[Any], host_weights: list[Any] | None,
           eps: float, atol: float, rtol: float, raise_exception: bool) -> bool:
    """gradcheck on float64 ``leaves``, projecting fn's outputs on ``host_weights``."""
    targets = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input requires grad")
    outs = _float_outputs(fn(*leaves))
    weights = _weights_for(outs, host_weights)
    grads = _vjp(outs, weights, [leaves[i] for i in targets])
    analytic = [np.zeros(leaves[i].shape) if g is None else to_numpy(g.data)
                for i, g in zip(targets, grads)]

    def value() -> float:
        return _projected(_float_outputs(fn(*leaves)), weights)

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
    directions = [rng.standard_normal(leaves[i].shape) for i in targets]  # u
    first_weights: list = []  # v, drawn on the first call

    @enable_grad()  # the numeric pass of gradcheck runs under no_grad; this needs a graph
    def first_derivative(*xs: Any) -> tuple[Tensor, ...]:
        outs = _float_outputs(fn(*xs))
        if not first_weights:
            first_weights.extend(_weights_for(outs, None))
        grads = _vjp(outs, first_weights, [xs[i] for i in targets], create_graph=True)
        return tuple(Tensor(get_array_module(xs[i].data).zeros(xs[i].shape)) if g is None
                     else g for i, g in zip(targets, grads))

    return _check(first_derivative, leaves, directions, eps, atol, rtol, raise_exception)
