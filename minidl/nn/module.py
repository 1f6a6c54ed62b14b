"""``Module`` and ``Parameter``: the base every layer and network is built from.

A Module owns three ordered dicts, filled by plain attribute assignment:

* ``_parameters`` -- :class:`Parameter` tensors the optimiser trains,
* ``_buffers``    -- state that is saved but not trained (BatchNorm running statistics),
* ``_modules``    -- child Modules.

Order is the order of assignment, so ``parameters()`` and ``state_dict()`` are the same in
every run (DeZero kept parameters in a ``set``, and their order changed with the hash seed).
Names are dotted paths: ``features.0.weight``.

Freezing (Keras' ``trainable=False``) sets ``requires_grad=False`` on the parameters. The
autograd engine then records no gradient for them, each Function skips the weight-gradient
computation (``needs_input_grad``), and optimisers skip parameters whose ``grad`` is None.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..backend import device_of, get_array_module, to_device, to_numpy

__all__ = ["Parameter", "Module", "StateDictError"]


# Keras' training methods, which live on minidl.keras.Model / Sequential (see __getattr__).
_KERAS_METHODS = frozenset({"compile", "fit", "evaluate", "predict", "summary"})


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default).

    ``regularizer`` (a callable ``Tensor -> scalar Tensor``) and ``constraint`` (a callable
    ``array -> array`` applied after each optimiser step) are attached by layers that take
    ``weight_regularizer=`` / ``weight_constraint=``.
    """

    __slots__ = ("regularizer", "constraint")

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data.data if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad)
        self.regularizer: Callable[[Tensor], Tensor] | None = None
        self.constraint: Callable[[Any], Any] | None = None

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class StateDictError(ValueError, KeyError):
    """Raised by ``load_state_dict`` when keys are missing/unexpected or shapes differ.

    A ValueError (and KeyError) subclass that names every problem at once; ``str()``
    is the full message. ``missing``, ``unexpected`` and ``mismatched`` hold the details.
    """

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple, tuple]]) -> None:
        super().__init__(message)
        self.message, self.missing, self.unexpected, self.mismatched = (
            message, missing, unexpected, mismatched)

    def __str__(self) -> str:
        return self.message


class _RemovableHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict) -> None:
        self.hooks = hooks
        self.id = _RemovableHandle._next_id
        _RemovableHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> _RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _as_array(value: Any) -> Any:
    return value.data if isinstance(value, Tensor) else value


class Module:
    """Base class of every layer and network.

    Subclasses assign Parameters, child Modules and buffers (``register_buffer``) in
    ``__init__`` and implement ``forward``. Calling the module runs ``forward`` and the
    forward hooks; calling it on a symbolic ``nn.Input`` builds a functional-API graph.
    """

    training: bool

    def __init__(self) -> None:
        # object.__setattr__ because our __setattr__ expects these dicts to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_trainable", True)

    # ---- registration ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attribute {name!r}")
        params, bufs, mods = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name, keep=params)
            if not self._trainable:
                value.requires_grad = False
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=mods)
            mods[name] = value
        elif name in params or name in mods:
            if value is not None:
                kind = "parameter" if name in params else "submodule"
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"to {kind} {name!r} (expected a "
                                f"{'Parameter' if name in params else 'Module'} or None)")
            (params if name in params else mods)[name] = None
        elif name in bufs:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: buffer {name!r} must be a Tensor or "
                                f"None, got {type(value).__name__}")
            bufs[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: dict) -> None:
        """Drop ``name`` from every registry but ``keep`` and from the instance dict."""
        self.__dict__.pop(name, None)
        for d in (self._parameters, self._buffers, self._modules):
            if d is not keep and name in d:
                del d[name]

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            reg = d.get(key)
            if reg is not None and name in reg:
                return reg[name]
        if name in _KERAS_METHODS:
            raise AttributeError(
                f"'{type(self).__name__}' has no {name}(): nn modules keep no training loop. "
                f"Build the model with minidl.keras.Sequential([...]) or minidl.keras.Model("
                f"inputs, outputs) for compile/fit/evaluate/predict/summary, or train it with "
                f"minidl.train.Trainer")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for key in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__[key]:
                del self.__dict__[key][name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a None placeholder, e.g. ``bias=False``) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter, got "
                            f"{type(param).__name__}")
        if param is not None and not self._trainable:
            param.requires_grad = False
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | Any | None,
                        persistent: bool = True) -> None:
        """Add a buffer: state saved in ``state_dict`` (if persistent) but never trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        if isinstance(tensor, Parameter):
            raise TypeError(f"register_buffer: {name!r} is a Parameter; use a plain Tensor")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module under ``name`` (names may be digits, as in Sequential)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # ---- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = "", memo: set | None = None
                      ) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, each once, pre-order."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self) -> Iterator[Module]:
        """This module and all descendants (each once)."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        """Direct submodules, in registration order."""
        for _, m in self.named_children():
            yield m

    def _named_members(self, kind: str, recurse: bool = True
                       ) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        mods = self.named_modules() if recurse else iter([("", self)])
        for prefix, m in mods:
            for name, t in getattr(m, kind).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{prefix}.{name}" if prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a parameter shared by two layers appears once."""
        for name, p in self._named_members("_parameters", recurse):
            yield (f"{prefix}.{name}" if prefix else name), p  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """All parameters, frozen ones included (optimisers skip those with no grad)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def trainable_parameters(self) -> Iterator[Parameter]:
        """The parameters that require grad (what an optimiser needs to see)."""
        return (p for p in self.parameters() if p.requires_grad)

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[tuple[str, Tensor]]:
        for name, b in self._named_members("_buffers", recurse):
            yield (f"{prefix}.{name}" if prefix else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """All buffers (e.g. BatchNorm's running_mean, running_var, num_batches_tracked)."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Total number of scalar parameters."""
        return sum(p.size for p in self.parameters()
                   if p.requires_grad or not trainable_only)

    # ---- modes -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, BatchNorm uses batch statistics), recursively."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode, recursively: ``train(False)``."""
        return self.train(False)

    @property
    def trainable(self) -> bool:
        """Keras' flag: False freezes every parameter of this module and its children."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for m in self.modules():
            object.__setattr__(m, "_trainable", bool(value))
            for p in m._parameters.values():
                if p is not None:
                    p.requires_grad = bool(value)
                    if not value:
                        p.grad = None

    def freeze(self) -> Module:
        """``trainable = False``: no gradients, no weight-gradient work, no updates."""
        self.trainable = False
        return self

    def unfreeze(self) -> Module:
        """``trainable = True``."""
        self.trainable = True
        return self

    def requires_grad_(self, flag: bool = True) -> Module:
        """torch spelling of ``trainable = flag``."""
        self.trainable = flag
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all parameters (to None by default, as torch does)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor(get_array_module(p.grad.data).zeros_like(p.grad.data))

    # ---- device and dtype --------------------------------------------------------------
    def _apply(self, fn: Callable[[Any], Any]) -> Module:
        """Replace every parameter's, gradient's and buffer's array by ``fn(array)``."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = fn(p.data)
                    if p.grad is not None:
                        p.grad = Tensor(fn(p.grad.data))
            for b in m._buffers.values():
                if b is not None:
                    b.data = fn(b.data)
        return self

    def to(self, device: str | None = None, dtype: Any = None) -> Module:
        """Move parameters and buffers to ``device`` and/or cast floating ones to ``dtype``.

        In place (the same Parameter objects, so an optimiser built earlier still sees them).
        """
        if device is not None and dtype is None and isinstance(device, (type, np.dtype)):
            device, dtype = None, device
        if device is not None:
            self._apply(lambda a: to_device(a, device))
        if dtype is not None:
            dt = np.dtype(dtype)
            self._apply(lambda a: a.astype(dt) if a.dtype.kind == "f" else a)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64 (e.g. for gradcheck)."""
        return self.to(dtype=np.float64)

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32."""
        return self.to(dtype=np.float32)

    @property
    def device(self) -> str:
        """Device of the first parameter or buffer ('cpu' for a module with none)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return "cpu"

    # ---- calling -----------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Fast path: a Tensor first argument is a real call, never a graph-building one.
        if not (args and isinstance(args[0], Tensor)):
            symbolic = _symbolic_argument(args)
            if symbolic is not None:  # building a graph (nn.Input): record, don't compute
                return symbolic._record_call(self, args, kwargs)
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]
                              ) -> _RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return value
        replaces the output. Returns a handle with ``remove()`` (also a context manager)."""
        handle = _RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]
                                  ) -> _RemovableHandle:
        """Call ``hook(module, inputs)`` before forward; a non-None return replaces inputs."""
        handle = _RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ---- regularisation ----------------------------------------------------------------
    def regularization_loss(self) -> Tensor | float:
        """Sum of ``p.regularizer(p)`` over parameters that have one (0.0 if none).

        Add it to the loss: ``loss = criterion(out, y) + model.regularization_loss()``.
        Like Keras, frozen layers' penalties are included (they are constants then).
        """
        total: Tensor | float = 0.0
        for p in self.parameters():
            reg = getattr(p, "regularizer", None)
            if reg is not None:
                total = total + reg(p)
        return total

    def apply_constraints(self) -> None:
        """Apply every parameter's ``constraint`` to its values (optimisers call this)."""
        for p in self.parameters():
            c = getattr(p, "constraint", None)
            if c is not None:
                p.data = c(p.data)

    # ---- state dict --------------------------------------------------------------------
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name, as Tensors sharing the data.

        ``keep_vars=True`` returns the Parameter objects themselves. Copy the arrays
        (``{k: v.numpy().copy() ...}``) to snapshot them, as training updates them in place.
        """
        out: OrderedDict[str, Tensor] = OrderedDict()
        for mprefix, m in self.named_modules(prefix.rstrip(".")):
            dot = f"{mprefix}." if mprefix else ""
            for name, p in m._parameters.items():
                if p is not None and dot + name not in out:
                    out[dot + name] = p if keep_vars else Tensor(p.data)
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent and dot + name not in out:
                    out[dot + name] = b if keep_vars else Tensor(b.data)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True
                        ) -> tuple[list[str], list[str]]:
        """Copy values from ``state_dict`` (Tensors or NumPy/CuPy arrays) into this module.

        Everything is validated first: with ``strict=True`` missing and unexpected keys are
        errors, and a shape mismatch always is. All problems are listed in one
        :class:`StateDictError`, and on error nothing is changed. Values are copied to each
        target's device and dtype. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of name -> array, got "
                            f"{type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for k, target in own.items():
            if k in state_dict:
                value = _as_array(state_dict[k])
                shape = tuple(getattr(value, "shape", np.shape(value)))
                if shape != target.shape:
                    mismatched.append((k, shape, target.shape))
        problems = []
        if strict and missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(
                f"{k}: checkpoint {s} vs model {t}" for k, s, t in mismatched))
        if problems:
            raise StateDictError(f"load_state_dict for {type(self).__name__} failed "
                                 f"(nothing was changed): " + " | ".join(problems),
                                 missing, unexpected, mismatched)
        # Convert everything before assigning anything, so a failing conversion (e.g. a
        # non-numeric array) cannot leave the module half-loaded.
        new = {}
        for k, target in own.items():
            if k not in state_dict:
                continue
            value = _as_array(state_dict[k])
            dev = device_of(target.data)
            try:
                arr = to_device(to_numpy(value) if device_of(value) != dev else value, dev)
                arr = get_array_module(target.data).array(arr, dtype=target.dtype, copy=True)
            except (TypeError, ValueError) as e:
                raise StateDictError(f"load_state_dict for {type(self).__name__} failed "
                                     f"(nothing was changed): {k}: cannot convert value of "
                                     f"dtype {getattr(value, 'dtype', type(value))} to "
                                     f"{target.dtype}: {e}", [], [], []) from None
            new[k] = arr
        for k, arr in new.items():
            own[k].data = arr
        return missing, unexpected

    # ---- repr --------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """One-line description of this module's settings (shown by ``repr``)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = []
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        frozen = "" if self._trainable else ", trainable=False"
        head = f"{type(self).__name__}({extra}{frozen}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    def __getstate__(self) -> dict:
        return self.__dict__.copy()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _symbolic_argument(args: Any) -> Any:
    """The first (nested) argument that stands for data still to come (an
    ``nn.SymbolicTensor``), else None.

    Recognised by its ``_record_call`` method rather than by class, so that this file needs
    nothing from nn/symbolic.py, which builds on Module: the two import in one direction only.
    """
    for a in args:
        if isinstance(a, (list, tuple)):
            found = _symbolic_argument(a)
            if found is not None:
                return found
        elif hasattr(type(a), "_record_call"):
            return a
    return None
