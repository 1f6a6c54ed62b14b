"""How Keras's arguments meet a model: ``x`` / ``y`` (arrays, lists, dicts) matched to the
inputs and outputs, and ``compile``'s per-output specs (one, a list, a dict by output name).

Dict keys are checked both ways: a missing or an unknown key is a one-line error that names
the keys the model expects (nothing is silently ignored).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import to_numpy
from ..nn import GraphModule

__all__ = ["input_names", "output_names", "arrays", "per_output", "check_keys"]


def check_keys(given: dict, expected: list[str], what: str, op: str) -> None:
    """Raise naming the expected keys when ``given`` lacks some or has others."""
    missing = [k for k in expected if k not in given]
    unknown = sorted(str(k) for k in given if k not in expected)
    if missing or unknown:
        parts = ([f"lacks {missing}"] if missing else []) + (
            [f"has unknown keys {unknown}"] if unknown else [])
        raise ValueError(f"{op}: {what} {' and '.join(parts)}; expected the keys {expected}")


def input_names(model: Any) -> list[str | None]:
    """The names that key a dict ``x``: a Model's input dict keys or its Inputs' names; a
    Sequential's leading Input's name."""
    keys = getattr(model, "_input_keys", None)
    if keys is not None:
        return list(keys)
    if isinstance(model, GraphModule):
        return [s.name for s in model.inputs]
    return [getattr(model, "_input_name", None)]


def n_outputs(model: Any) -> int:
    return len(model.outputs) if isinstance(model, GraphModule) else 1


def n_inputs(model: Any) -> int:
    return len(model.inputs) if isinstance(model, GraphModule) else 1


def output_names(model: Any) -> list[str]:
    """Keras's output names: the keys of a dict of outputs, else the names of the layers
    that produce them (``output_i`` where those clash); a Sequential's last layer's name."""
    keys = getattr(model, "_output_keys", None)
    if keys is not None:
        return list(keys)
    if not isinstance(model, GraphModule):
        layers = list(model.children())
        return [getattr(layers[-1], "name", None) or "output"] if layers else ["output"]
    names = []
    for i, s in enumerate(model.outputs):
        layer = model._layer_names.get(id(s.node.module)) if s.node else None
        names.append(s.name or layer or f"output_{i}")
    if len(set(names)) < len(names):
        names = [f"output_{i}" for i in range(len(names))]
    return names


def _from_dict(model: Any, data: dict, what: str, op: str) -> list[Any]:
    if what == "x":
        names = input_names(model)
        unnamed = [f"{i} (shape {s.shape})" for i, (s, n) in
                   enumerate(zip(getattr(model, "inputs", [None] * len(names)), names))
                   if n is None]
        if unnamed:
            which = (f"model input {unnamed[0]} has" if len(unnamed) == 1
                     else f"model inputs {', '.join(unnamed)} have")
            raise ValueError(f"{op}: x is a dict, but {which} no name; dict inputs need named "
                             f"Inputs (keras.Input(shape, name=...)), else pass a list in the "
                             f"Inputs' order")
    else:
        names = output_names(model)
    check_keys(data, names, what, op)  # type: ignore[arg-type]
    return [data[k] for k in names]


def arrays(model: Any, data: Any, what: str, op: str) -> list[np.ndarray]:
    """``x`` or ``y`` as a list of host arrays, one per model input (``what='x'``) or output
    (``'y'``); a dict is ordered by the input / output names. NumPy and CuPy arrays, Tensors
    and nested lists are all accepted (copied to the host by ``backend.to_numpy``). Errors
    name ``op`` (``fit``, ``evaluate``, ``predict``)."""
    if isinstance(data, dict):
        data = _from_dict(model, data, what, op)
    n = n_inputs(model) if what == "x" else n_outputs(model)
    items = list(data) if isinstance(data, (list, tuple)) and (
        n > 1 or (data and hasattr(data[0], "shape"))) else [data]
    if len(items) != n:
        raise ValueError(f"{op}: expected {n} {what} array(s) (one per model "
                         f"{'input' if what == 'x' else 'output'}), got {len(items)}")
    out = [to_numpy(a.data if isinstance(a, Tensor) else a) for a in items]
    sizes = {len(a) for a in out}
    if len(sizes) > 1:
        raise ValueError(f"{op}: {what} arrays have different numbers of samples: "
                         f"{[len(a) for a in out]}")
    return out


def per_output(model: Any, spec: Any, what: str, default: Any = None,
               listy: bool = False) -> list[Any]:
    """One entry of ``spec`` per output: ``spec`` itself for every output, a list in output
    order, or a dict by output name (missing names get ``default``; unknown names are an
    error). ``listy``: a plain list is one spec for every output (compile's metrics)."""
    names = output_names(model)
    n = len(names)
    if isinstance(spec, dict):
        unknown = sorted(str(k) for k in spec if k not in names)
        if unknown:
            raise ValueError(f"compile: {what} has unknown keys {unknown}; expected the output "
                             f"names {names}")
        return [spec.get(k, default) for k in names]
    if isinstance(spec, (list, tuple)) and not listy:
        if len(spec) != n:
            raise ValueError(f"compile: {len(spec)} {what} for {n} outputs")
        return list(spec)
    if listy and isinstance(spec, (list, tuple)) and n > 1 and spec and all(
            isinstance(s, (list, tuple)) or s is None for s in spec):
        if len(spec) != n:
            raise ValueError(f"compile: {len(spec)} {what} lists for {n} outputs")
        return list(spec)
    return [spec] * n
