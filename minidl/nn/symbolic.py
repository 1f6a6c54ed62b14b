"""The symbolic graph: ``Input``, layers called on symbolic tensors, ``GraphModule``.

    >>> import minidl as md, minidl.nn as nn
    >>> inp_wide, inp_deep = nn.Input((5,), name="wide"), nn.Input((6,), name="deep")
    >>> h = nn.Linear(6, 30, activation="relu")(inp_deep)
    >>> h = nn.Linear(30, 30, activation="relu")(h)
    >>> out = nn.Linear(35, 1)(nn.Concat()([inp_wide, h]))
    >>> aux = nn.Linear(30, 1)(h)
    >>> out.shape, aux.shape
    ((None, 1), (None, 1))
    >>> model = nn.GraphModule(inputs=[inp_wide, inp_deep], outputs=[out, aux])
    >>> [y.shape for y in model(md.randn(4, 5), md.randn(4, 6))]
    [(4, 1), (4, 1)]

Calling a Module on a :class:`SymbolicTensor` records a node (the module and its
arguments) instead of computing; the output's shape is found by running the layer once on
a small batch of zeros in eval mode without grad (or by its ``compute_output_shape``).
``GraphModule`` sorts the nodes topologically and replays them on real tensors. A layer
called twice is *shared*: one set of weights, two nodes. Keras' ``compile`` / ``fit`` /
``evaluate`` / ``predict`` / ``summary`` live in :mod:`minidl.keras` (``keras.Model`` is a
GraphModule with them).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..autograd import Tensor, no_grad, tensor
from ..backend import get_default_device, xp_for
from .activation import Lambda
from .module import Module

__all__ = ["Input", "SymbolicTensor", "GraphModule", "symbolic_call"]


class SymbolicTensor:
    """A placeholder for a batch of data flowing through a graph under construction.

    ``shape`` has ``None`` for the batch dimension: ``Input((6,)).shape == (None, 6)``.
    """

    def __init__(self, shape: tuple[int | None, ...], dtype: Any, node: _Node | None,
                 index: int = 0, name: str | None = None) -> None:
        self.shape, self.dtype, self.node, self.index, self.name = (
            tuple(shape), np.dtype(dtype), node, index, name)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        src = "Input" if self.node is None else type(self.node.module).__name__
        name = f" name={self.name!r}" if self.name else ""
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype} from {src}{name}>"

    def _record_call(self, module: Module, args: tuple, kwargs: dict) -> Any:
        """What ``module(*args, **kwargs)`` does when an argument is symbolic (Module.__call__
        looks for this method, so that nn/module.py needs nothing from this file)."""
        return symbolic_call(module, args, kwargs)

    def _op(self, fn: Callable[..., Any], *others: Any) -> SymbolicTensor:
        return Lambda(fn)(self, *others)

    # Arithmetic on symbolic tensors becomes Lambda nodes (Keras allows ``a + b``).
    def __add__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a + b, o)

    def __radd__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: b + a, o)

    def __sub__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a - b, o)

    def __rsub__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: b - a, o)

    def __mul__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a * b, o)

    def __rmul__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: b * a, o)

    def __truediv__(self, o: Any) -> SymbolicTensor:
        return self._op(lambda a, b: a / b, o)


def Input(shape: Sequence[int] | int, name: str | None = None,  # noqa: N802 - Keras name
          dtype: Any = np.float32) -> SymbolicTensor:
    """A symbolic model input for samples of ``shape`` (the batch dimension is implicit)."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(shape)
    if any(not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ValueError(f"Input: shape must be positive ints (without the batch dim), "
                         f"got {shape}")
    return SymbolicTensor((None, *(int(s) for s in shape)), dtype, None, 0, name)


class _Node:
    """One call of a module in the graph: ``outputs = module(*args, **kwargs)``."""

    def __init__(self, module: Module, args: tuple, kwargs: dict) -> None:
        self.module, self.args, self.kwargs = module, args, kwargs
        self.outputs: list[SymbolicTensor] = []
        self.multi = False

    def inputs(self) -> list[SymbolicTensor]:
        return [s for s in _walk(self.args) if isinstance(s, SymbolicTensor)] + \
               [s for s in _walk(tuple(self.kwargs.values())) if isinstance(s, SymbolicTensor)]


def _walk(obj: Any) -> Iterator[Any]:
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _walk(o)
    else:
        yield obj


def _map(obj: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(obj, list):
        return [_map(o, fn) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    return fn(obj)


def symbolic_call(module: Module, args: tuple, kwargs: dict) -> Any:
    """Record ``module(*args)`` as a graph node; return symbolic output(s)."""
    node = _Node(module, args, kwargs)
    compute = getattr(module, "compute_output_shape", None)
    if compute is not None:
        shapes = compute(*_map(args, lambda a: a.shape if isinstance(a, SymbolicTensor) else a))
        first = next(s for s in _walk(args) if isinstance(s, SymbolicTensor))
        outs: Any = (SymbolicTensor(tuple(shapes), first.dtype, node),)
        node.multi = False
    else:
        example = _map(args, lambda a: _example(a, module) if isinstance(a, SymbolicTensor)
                       else a)
        ex_kwargs = {k: _map(v, lambda a: _example(a, module) if isinstance(a, SymbolicTensor)
                             else a) for k, v in kwargs.items()}
        flags = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            with no_grad():
                result = module.forward(*example, **ex_kwargs)
        except (ValueError, TypeError) as e:
            if type(e) not in (ValueError, TypeError):  # a subclass may need other arguments
                raise
            shapes = [s.shape for s in _walk(args) if isinstance(s, SymbolicTensor)]
            raise type(e)(f"{type(module).__name__} called on symbolic input(s) of shape "
                          f"{shapes}: {e}") from e
        finally:
            for m, flag in flags:
                object.__setattr__(m, "training", flag)
        node.multi = isinstance(result, (tuple, list))
        results = list(result) if node.multi else [result]
        outs = tuple(SymbolicTensor((None, *r.shape[1:]), r.dtype, node, i)
                     for i, r in enumerate(results))
    node.outputs = list(outs)
    return list(outs) if node.multi else outs[0]


def _example(s: SymbolicTensor, module: Module) -> Tensor:
    """Two samples of zeros (two, so batch statistics are defined) on the module's device
    (the default device for a layer without weights yet, which builds them from this)."""
    has_state = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
    xp = xp_for(module.device if has_state else get_default_device())
    return Tensor(xp.zeros((2, *s.shape[1:]), dtype=s.dtype))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class GraphModule(Module):
    """A network defined by its symbolic inputs and outputs (Keras' functional ``Model``
    without the training methods, which :class:`minidl.keras.Model` adds).

    ``GraphModule(inputs=[a, b], outputs=[y, aux])``; calling it with real tensors (one per input)
    returns a list of output tensors (a single tensor when ``outputs`` was not a list).
    Layers are registered under their ``name`` or a Keras-style one (``linear``,
    ``linear_1``, ...), so state-dict keys read ``linear_1.weight``.
    """

    def __init__(self, inputs: SymbolicTensor | Sequence[SymbolicTensor],
                 outputs: SymbolicTensor | Sequence[SymbolicTensor],
                 name: str | None = None) -> None:
        super().__init__()
        self.name = name
        self._single_input = isinstance(inputs, SymbolicTensor)
        self._single_output = isinstance(outputs, SymbolicTensor)
        self.inputs = [inputs] if self._single_input else list(inputs)
        self.outputs = [outputs] if self._single_output else list(outputs)
        for what, group in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not group:
                raise ValueError(f"{type(self).__name__}: {what} is empty")
            for s in group:
                if not isinstance(s, SymbolicTensor):
                    raise TypeError(f"{type(self).__name__}: {what} must be symbolic tensors "
                                    f"(from nn.Input and layers called on it), got "
                                    f"{type(s).__name__}")
        for s in self.inputs:
            if s.node is not None:
                raise ValueError(f"{type(self).__name__}: inputs must come from nn.Input, but "
                                 f"{s} is a layer output")
        self._nodes = self._toposort()
        names: dict[int, str] = {}
        counts: dict[str, int] = {}
        for node in self._nodes:
            m = node.module
            if id(m) in names:
                continue
            base = getattr(m, "name", None) or _snake(type(m).__name__)
            if getattr(m, "name", None):
                key = base
                if key in self._modules:
                    raise ValueError(f"{type(self).__name__}: two layers are named {key!r}")
            else:
                k = counts.get(base, 0)
                key = base if k == 0 else f"{base}_{k}"
                while key in self._modules:
                    k += 1
                    key = f"{base}_{k}"
                counts[base] = k + 1
            names[id(m)] = key
            self.add_module(key, m)
        self._layer_names = names

    def _toposort(self) -> list[_Node]:
        """Nodes in an order where each runs after the nodes producing its inputs."""
        order: list[_Node] = []
        state: dict[int, int] = {}  # 1 = visiting, 2 = done
        given = {id(s) for s in self.inputs}
        for out in self.outputs:
            stack: list[tuple[SymbolicTensor, bool]] = [(out, False)]
            while stack:
                sym, expanded = stack.pop()
                node = sym.node
                if node is None:
                    if id(sym) not in given:
                        raise ValueError(f"{type(self).__name__}: the outputs depend on {sym}, "
                                         "which is not in inputs")
                    continue
                if expanded:
                    if state.get(id(node)) != 2:
                        state[id(node)] = 2
                        order.append(node)
                    continue
                if state.get(id(node)) == 2:
                    continue
                state[id(node)] = 1
                stack.append((sym, True))
                for s in reversed(node.inputs()):
                    if s.node is not None and state.get(id(s.node)) == 1:
                        raise ValueError(f"{type(self).__name__}: the graph has a cycle")
                    stack.append((s, False))
        return order

    @property
    def layers(self) -> list[Module]:
        """The distinct layers, in graph order."""
        return list(self._modules.values())

    def get_layer(self, name: str) -> Module:
        """The layer registered under ``name``."""
        try:
            return self._modules[name]
        except KeyError:
            raise KeyError(f"{type(self).__name__}: no layer named {name!r}; layers are "
                           f"{list(self._modules)}") from None

    def forward(self, *xs: Any) -> Any:
        if len(xs) == 1 and isinstance(xs[0], (list, tuple)) and len(self.inputs) > 1:
            xs = tuple(xs[0])
        if len(xs) != len(self.inputs):
            raise ValueError(f"{type(self).__name__}: expected {len(self.inputs)} inputs "
                             f"{[s.shape for s in self.inputs]}, got {len(xs)}")
        values: dict[int, Any] = {}
        for sym, x in zip(self.inputs, xs):
            if not isinstance(x, Tensor):
                x = tensor(x, device=self.device)
            if x.ndim != sym.ndim or x.shape[1:] != sym.shape[1:]:
                label = f" {sym.name!r}" if sym.name else ""
                raise ValueError(f"{type(self).__name__}: input{label} expects shape "
                                 f"{sym.shape}, got {tuple(x.shape)}")
            values[id(sym)] = x

        def resolve(a: Any) -> Any:
            return values[id(a)] if isinstance(a, SymbolicTensor) else a

        for node in self._nodes:
            args = _map(node.args, resolve)
            kwargs = {k: _map(v, resolve) for k, v in node.kwargs.items()}
            result = node.module(*args, **kwargs)
            results = list(result) if node.multi else [result]
            for sym, r in zip(node.outputs, results):
                values[id(sym)] = r
        outs = [values[id(s)] for s in self.outputs]
        return outs[0] if self._single_output else outs

    def extra_repr(self) -> str:
        return (f"inputs={[s.shape for s in self.inputs]}, "
                f"outputs={[s.shape for s in self.outputs]}")
