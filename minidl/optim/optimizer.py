"""The Optimizer base class: parameter groups, per-parameter state, zero_grad, state dicts.

The update rules live one family per file (``sgd.py``, ``adam.py``, ``rmsprop.py``,
``adagrad.py``, ``adadelta.py``) and follow ``torch.optim``'s rules and defaults, ``maximize=``
included (the gradient is negated first, as torch does).

Every optimiser updates ``p.data`` in place with array arithmetic (NumPy or CuPy, whichever
holds the parameter), skips parameters whose ``grad`` is None (frozen or unused ones), and
after the update applies each parameter's ``constraint`` (set by a layer's
``weight_constraint=``), as Keras does.

Updates allocate nothing as large as a parameter: each rule is written with in-place ops
(``out=``) into a few scratch arrays, and on the CPU a large parameter is updated one
cache-sized slice at a time (:meth:`Optimizer._slices`), so the scratch stays small and hot.
The arithmetic, and so every rounding, is that of the plain expressions in the docstrings.

    opt = optim.SGD([{"params": backbone.parameters(), "lr": 1e-4},   # fine-tune gently
                     {"params": head.parameters()}], lr=1e-2, momentum=0.9)
"""
from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..autograd import Tensor, enable_grad
from ..backend import device_of, get_array_module, to_device, to_numpy

__all__ = ["Optimizer"]


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
        self._scratch: dict[Any, list[Any]] = {}  # dtype -> CPU scratch arrays of _slices

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
        """Clear the gradients of every parameter (None by default, as torch does).

        ``set_to_none=False`` zeroes the existing gradient arrays in place instead, so that
        the next backward accumulates into them without allocating.
        """
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                elif p.grad.data.base is None and getattr(p.grad.data.flags, "writeable", True):
                    p.grad.data.fill(0)
                else:  # a view or a read-only array: do not write through it
                    p.grad = Tensor(get_array_module(p.data).zeros_like(p.data))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, then apply its constraint.

        ``closure``, as in torch, is called first (with gradients enabled) to recompute
        the loss and the gradients; its value is returned (None without one).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
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
                # an in-place change, as in torch: a graph that saved p before the step
                # refuses to backward through the old value
                p._bump_version()
        return loss

    def _update(self, p: Tensor, g: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _slices(self, arrays: list[Any], n_tmp: int) -> Iterator[list[Any]]:
        """Yield ``[slice of each array..., tmp_1, ..., tmp_n]`` covering ``arrays`` (the
        parameter data first, then same-shaped gradient and state arrays, or None).

        On the CPU with contiguous arrays these are matching flat slices of ``_SLICE``
        elements and scratch arrays reused across steps, so a rule run on each slice touches
        cache-resident memory and allocates nothing. Otherwise (the GPU, where CuPy's pool
        recycles the scratch, or unusual layouts) there is one "slice": the whole arrays.
        """
        p = arrays[0]
        xp = get_array_module(p)
        if xp is np and all(a is None or (a.flags.c_contiguous and a.dtype == p.dtype)
                            for a in arrays):
            flat = [None if a is None else a.reshape(-1) for a in arrays]
            scratch = self.__dict__.setdefault("_scratch", {}).setdefault(p.dtype, [])
            while len(scratch) < n_tmp:
                scratch.append(np.empty(_SLICE, p.dtype))
            for i in range(0, p.size, _SLICE):
                j = min(p.size, i + _SLICE)
                yield ([None if a is None else a[i:j] for a in flat]
                       + [t[:j - i] for t in scratch[:n_tmp]])
        else:
            yield list(arrays) + [xp.empty_like(p) for _ in range(n_tmp)]

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
                # every array is copied (0-d ones too: a scalar parameter's momentum)
                state[index[id(p)]] = {k: (to_numpy(v).copy() if hasattr(v, "shape") else v)
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
                elif hasattr(v, "shape") and p.ndim == 0 and key in _ARRAY_STATE:
                    # the state array of a 0-d parameter
                    restored[key] = get_array_module(p.data).array(to_device(to_numpy(v),
                                                                             p.device),
                                                                   dtype=p.dtype)
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


# Per-parameter state entries that are arrays shaped like the parameter (the rest are counts
# and products); needed to restore the state of 0-d parameters, whose arrays look like scalars.
_ARRAY_STATE = frozenset({"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq",
                          "square_avg", "grad_avg", "sum", "exp_inf", "acc_delta"})

# Elements per slice of a CPU update: 128K float32 = 512 KB per array, a few of which stay in
# L2/L3 while a rule makes its passes over them.
_SLICE = 1 << 17


# Keras' spellings of torch's hyper-parameters, for the error message.
_KERAS_NAMES = {"learning_rate": "lr", "beta_1": "betas", "beta_2": "betas", "epsilon": "eps",
                "rho": "alpha"}


def _check_torch_options(cls: type, options: dict[str, Any]) -> None:
    """torch.optim's implementation switches: ``foreach=`` and ``fused=`` choose how torch
    runs the same update, so they are accepted and change nothing here; ``capturable=True``
    and ``differentiable=True`` have no minidl counterpart and raise; any other keyword is
    an error naming the keywords ``cls`` takes."""
    for key, value in options.items():
        if key in ("foreach", "fused"):
            continue
        if key in ("capturable", "differentiable"):
            if value:
                raise ValueError(f"{cls.__name__}: {key}=True is not supported (minidl's "
                                 "optimiser steps are neither CUDA-graph captured nor "
                                 f"differentiable); drop {key}=")
            continue
        names = [n for n in inspect.signature(cls.__init__).parameters
                 if n not in ("self", "params", "torch_options")]
        close = [_KERAS_NAMES[key]] if key in _KERAS_NAMES else difflib.get_close_matches(
            key, names, 1)
        hint = f"did you mean {close[0]!r}? " if close and close[0] in names else ""
        raise TypeError(f"{cls.__name__}: unexpected keyword {key!r}; {hint}it takes "
                        f"{', '.join(names)}")


def _signed(g: Any, maximize: bool, out: Any) -> Any:
    """``-g`` in ``out`` when maximising (torch negates the gradient first), else ``g``.

    The gradient may be shared with the user, so it is never negated in place.
    """
    return get_array_module(g).negative(g, out=out) if maximize else g


def _decayed(p: Any, g: Any, wd: float, t1: Any, t2: Any) -> Any:
    """``g + wd * p`` (L2 weight decay) in ``t1``, or ``g`` itself when ``wd`` is 0.

    The gradient may be shared with the user, so it is never modified in place.
    """
    if not wd:
        return g
    xp = get_array_module(p)
    xp.multiply(p, wd, out=t2)
    return xp.add(g, t2, out=t1)
