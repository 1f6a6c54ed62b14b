"""Define-by-run autograd: ``Tensor``, ``Function`` and the backward engine.

A forward pass builds a graph as it runs: every ``Function`` call that involves a tensor
requiring grad records its parents (the Functions that produced its inputs, or the leaf
tensors themselves) and a *generation*, one more than the latest of its inputs.
``Tensor.backward`` walks that graph iteratively, popping Functions from a heap keyed by
generation, so a Function runs only after every consumer of its outputs has delivered its
gradient. No recursion is involved: a chain of 10,000 ops is fine.

In-place ops (``x += y``, ``x[i] = v``, ``zero_()``, ..., in ``minidl.functional.inplace``)
are guarded by version counters: each tensor counts the in-place changes of its memory (its
views share the count, :class:`ViewFunction`), a Function that saves a tensor notes its
version, and backward refuses to run on a saved tensor that changed since. A Function can
also be written in torch's style (``@staticmethod forward(ctx, ...)``, ``F.apply(x)``): it
is adapted to this one when its class is created, and runs on the same engine.

Memory: a Function keeps only what its backward needs (``keep_inputs``, ``keep_output`` or
arrays saved in ``forward``); edges hold the producing Function, not the intermediate
tensor, so an activation nobody needs is freed as soon as the user drops it. After backward,
each Function drops its saved state unless ``retain_graph=True``.

The engine needs only three ops of its own, defined here so that this module stands on its
own (it imports nothing from ``minidl.functional``): :class:`Accumulate` sums two gradients of
one tensor, :class:`Cast` casts a gradient back to its input's dtype, and :class:`ToDevice`
moves a tensor between devices. They are Functions like any other, so a ``create_graph``
backward records them. Operator overloads (``+``, ``@``, ``.sum()``, ...) are attached to
``Tensor`` by ``minidl.functional.tensor_methods.install_tensor_methods``, which
``import minidl`` calls once.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import heapq
import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .backend import device_of, get_array_module, get_default_device, to_device, to_numpy, xp_for

__all__ = ["Tensor", "Function", "tensor", "no_grad", "enable_grad", "is_grad_enabled",
           "set_grad_enabled", "detect_anomaly", "is_anomaly_enabled", "grad", "as_tensor",
           "Accumulate", "Cast", "ToDevice", "ViewFunction"]

_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("minidl_grad", default=True)
_anomaly: contextvars.ContextVar[bool] = contextvars.ContextVar("minidl_anomaly", default=False)


def is_grad_enabled() -> bool:
    """Whether operations are currently recorded for backward."""
    return _grad_enabled.get()


class _GradMode:
    """Context manager and decorator that sets grad mode for the current thread/task."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> None:
        self._tokens.append(_grad_enabled.set(self.enabled))

    def __exit__(self, *exc: object) -> None:
        _grad_enabled.reset(self._tokens.pop())

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(self.enabled):
                return fn(*args, **kwargs)
        return wrapper


def no_grad(fn: Callable | None = None) -> Any:
    """Disable graph recording: ``with md.no_grad(): ...``, ``@md.no_grad()`` or, as torch 2
    allows, ``@md.no_grad`` without parentheses (then ``fn`` is the decorated function)."""
    return _GradMode(False) if fn is None else _GradMode(False)(fn)


def enable_grad(fn: Callable | None = None) -> Any:
    """Re-enable graph recording inside a ``no_grad`` block; a context manager or a
    decorator, with or without parentheses, like :func:`no_grad`."""
    return _GradMode(True) if fn is None else _GradMode(True)(fn)


def set_grad_enabled(enabled: bool) -> _GradMode:
    """Set grad mode explicitly (context manager)."""
    return _GradMode(enabled)


def is_anomaly_enabled() -> bool:
    """Whether :func:`detect_anomaly` is active (ops may then afford checks that sync the GPU)."""
    return _anomaly.get()


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Check every forward output and backward gradient for NaN/Inf.

    The first Function that produces one raises ``FloatingPointError`` naming it. This
    synchronises with the GPU after each op, so use it for debugging only.
    """
    token = _anomaly.set(True)
    try:
        yield
    finally:
        _anomaly.reset(token)


def _check_finite(arrays: Iterable[Any], fn: Function, where: str) -> None:
    for i, a in enumerate(arrays):
        if a is None or a.dtype.kind not in "fc":
            continue
        xp = get_array_module(a)
        if not bool(xp.isfinite(a).all()):
            kind = "NaN" if bool(xp.isnan(a).any()) else "Inf"
            raise FloatingPointError(
                f"anomaly: {type(fn).__name__}.{where} produced {kind} in its "
                f"{'output' if where == 'forward' else 'gradient for input'} {i} "
                f"(shape {tuple(a.shape)})")


class _HookHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook: Callable, owner: Tensor | None = None) -> None:
        self._hooks, self._hook = hooks, hook
        # for a post-accumulate hook, the leaf (weakly), to leave _post_hooked with the last
        self._owner = None if owner is None else weakref.ref(owner)

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)
            owner = None if self._owner is None else self._owner()
            if owner is not None and not self._hooks:
                _post_hooked.pop(id(owner), None)


# How many in-place ops have run in this process: a Function notes it when it saves tensors,
# and backward checks the saved versions only if an in-place op ran since (rarely: an
# optimiser's in-place step comes after backward), so the check costs one compare per node.
_inplace_ops = [0]

# The leaves that have post-accumulate-grad hooks, by id (weakly: a leaf dropped with its
# hooks leaves it; a WeakSet would compare tensors with their elementwise ==). While it is
# empty, backward skips the pass that counts each leaf's incoming edges, the only cost of
# the feature.
_post_hooked: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()


class Tensor:
    """An n-dimensional array on 'cpu' or 'cuda' that can record the operations applied to it.

    ``data`` is the backend array (numpy.ndarray or cupy.ndarray); ``grad`` is a Tensor of
    the same shape, filled by ``backward`` for tensors with ``requires_grad=True``.
    """

    # ``_vc``: the version counter, a one-element list shared with every view of the same
    # memory (None until the first view, save or in-place op needs it: version 0).
    # ``_view``: (root, replay, version) for a view of a root tensor's memory, where
    # ``replay(root)`` makes the view again (of an array or a Tensor) and ``version`` is the
    # counter's value when this view's graph was made; None for a tensor that is no view.
    __slots__ = ("data", "grad", "requires_grad", "creator", "output_index", "generation",
                 "name", "_hooks", "_vc", "_view", "_post_hooks", "__weakref__")
    # Makes ``ndarray * Tensor`` call Tensor.__rmul__ instead of broadcasting elementwise.
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None) -> None:
        if type(data) is not np.ndarray:  # the common case first: every op makes Tensors
            if isinstance(data, Tensor):
                data = data.data
            xp = get_array_module(data)
            if not isinstance(data, xp.ndarray):
                data = np.asarray(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require grad; got dtype {data.dtype} "
                f"(shape {tuple(data.shape)})")
        self.data = data
        self.grad: Tensor | None = None
        self.requires_grad = requires_grad
        self.creator: Function | None = None
        self.output_index = 0
        self.generation = 0
        self.name = name
        self._hooks: list[Callable] | None = None
        self._vc: list[int] | None = None
        self._view: tuple[Tensor, Callable, int] | None = None
        self._post_hooks: list[Callable] | None = None

    # ---- array-like attributes -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def device(self) -> str:
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use .any() or .all() on .data")
        return bool(self.data.reshape(()))

    def __repr__(self) -> str:
        body = np.array2string(to_numpy(self.data), separator=", ", precision=4,
                               threshold=20, edgeitems=2)
        extra = f", device='{self.device}'" if self.device != "cpu" else ""
        if self.requires_grad:
            extra += (f", grad_fn={type(self.creator).__name__}" if self.creator
                      else ", requires_grad=True")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        """A NumPy copy (from the GPU) or the array itself (on the CPU), detached."""
        return to_numpy(self.data)

    def item(self) -> float:
        """The single value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item: tensor has {self.size} elements (shape {self.shape}), "
                             "expected 1")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return to_numpy(self.data).tolist()

    @property
    def _version(self) -> int:
        """How many in-place operations changed this tensor's memory (shared with its views)."""
        vc = self._vc
        return 0 if vc is None else vc[0]

    def _bump_version(self) -> None:
        """Count one in-place change of this tensor's memory (called by every in-place op)."""
        if self._vc is None:
            self._vc = [1]
        else:
            self._vc[0] += 1
        _inplace_ops[0] += 1

    def detach(self) -> Tensor:
        """A tensor sharing the data (and its version counter), cut from the graph."""
        t = Tensor(self.data)
        if self._vc is None:
            self._vc = [0]
        t._vc = self._vc
        return t

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad; got dtype {self.dtype}")
        if not flag and self.creator is not None:
            raise RuntimeError(f"requires_grad_(False): this tensor (shape {self.shape}) is the "
                               "output of an op, and only leaves' flags can change, as in "
                               "torch; use .detach() for a copy outside the graph")
        self.requires_grad = flag
        return self

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` ('cpu' or 'cuda'); differentiable across the copy."""
        if device == self.device:
            return self
        return ToDevice(device)(self)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    # ---- hooks ------------------------------------------------------------------------
    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> _HookHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned Tensor
        replaces the gradient."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: tensor does not require grad")
        if self.creator is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            hooks = self.creator._hooks_for(self.output_index)
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> _HookHandle:
        """Call ``hook(self)`` during backward, as soon as this leaf's ``.grad`` is final for
        this pass (after its last accumulation), while the rest of the backward still runs.

        Like torch's hook of that name: it fires once per backward for each leaf that got a
        gradient, not under :func:`grad` (which accumulates nothing). Gradient buckets
        use it to start an all-reduce before backward has finished.
        """
        if self.creator is not None or not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that "
                               "requires grad can have one (hook an intermediate tensor's "
                               "gradient with register_hook)")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        _post_hooked[id(self)] = self
        return _HookHandle(self._post_hooks, hook, owner=self)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (leaves always keep it)."""
        if self.creator is None:
            return
        hooks = self.creator._hooks_for(self.output_index)
        if any(getattr(h, "retains_grad", False) for h in hooks):
            return  # already retained: a second hook would count the gradient twice
        ref = weakref.ref(self)

        def keep(g: Tensor) -> None:
            t = ref()
            if t is not None:
                t.grad = g.detach() if t.grad is None else Tensor(t.grad.data + g.data)
        keep.retains_grad = True  # type: ignore[attr-defined]
        hooks.append(keep)

    # ---- backward ---------------------------------------------------------------------
    def backward(self, grad: Tensor | Any | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False, *, gradient: Tensor | Any | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` (torch's keyword ``gradient=`` also works) is required unless this tensor
        has one element. The graph is freed afterwards unless ``retain_graph`` (default:
        ``create_graph``) is true; ``create_graph=True`` records the backward pass itself,
        for higher derivatives.
        """
        if gradient is not None:
            if grad is not None:
                raise TypeError("backward: give the upstream gradient once, as grad= or as "
                                "gradient=, not both")
            grad = gradient
        if not self.requires_grad:
            raise RuntimeError(
                f"backward: this tensor (shape {self.shape}) does not require grad and has "
                "no graph; did you forget requires_grad=True, or run under no_grad()?")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward: grad can be omitted only for a one-element tensor, but this "
                    f"one has shape {self.shape}; pass grad= of that shape (or call .sum())")
            grad = Tensor(get_array_module(self.data).ones_like(self.data))
        else:
            grad = as_tensor(grad, like=self)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has "
                                 f"shape {self.shape}")
        if retain_graph is None:
            retain_graph = create_graph
        _run_backward([self], [grad], retain_graph, create_graph)

    def _edge(self) -> Any:
        return self if self.creator is None else (self.creator, self.output_index)


def _release_message(fn: Function) -> str:
    return (f"backward through {type(fn).__name__} a second time: its saved values were freed "
            "by the first backward. Pass retain_graph=True to the first backward() if you "
            "need to backpropagate through the same graph twice.")


class Function:
    """One differentiable operation.

    Subclasses implement ``forward(*arrays) -> array | tuple`` on raw backend arrays and
    ``backward(*grad_outputs) -> Tensor | tuple`` with minidl ops on Tensors (so the backward
    pass can itself be differentiated). See the module docstring for what gets kept.
    """

    #: indices of inputs whose Tensor backward needs (available as ``self.inputs[i]``)
    keep_inputs: tuple[int, ...] = ()
    #: whether backward needs the outputs (available as ``self.output(i)``)
    keep_output: bool = False
    #: optional ``fast_backward(*gy_arrays) -> tuple``: the same gradients as ``backward``,
    #: bit for bit, computed on raw arrays (one array or None per input), which the engine
    #: uses when the backward is not recorded; it returns NotImplemented for a case it does
    #: not cover (mixed dtypes, say), and then ``backward`` runs
    fast_backward: Callable[..., Any] | None = None

    needs_input_grad: tuple[bool, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    input_dtypes: tuple[np.dtype, ...]

    def __call__(self, *inputs: Any) -> Any:
        # This runs for every op, forward and (without create_graph) inside every backward.
        # It makes one pass over the inputs, and builds only the tuples the graph keeps.
        tensors: Sequence[Tensor] = inputs
        kind = None
        record = False
        for t in inputs:
            if not isinstance(t, Tensor):  # rare: a scalar or an array among the operands
                tensors = _as_tensors(inputs, self)
                record = any([u.requires_grad for u in tensors])
                break
            if kind is None:
                kind = type(t.data)
            elif type(t.data) is not kind:
                _check_devices(inputs, self)
            if t.requires_grad:
                record = True
        if record or _inplace_ops[0]:
            if not _grad_enabled.get():
                record = False
            elif _inplace_ops[0]:  # a view can only be stale after some in-place op
                for t in tensors:
                    view = t._view
                    if view is not None and view[2] != t._vc[0]:
                        _refresh_view(t)  # its base was changed in place since it was taken
                        record = record or t.requires_grad
        n = len(tensors)
        if not record:
            self.needs_input_grad = _NO_GRAD[n] if n < len(_NO_GRAD) else (False,) * n
            if n == 2:
                outputs = self.forward(tensors[0].data, tensors[1].data)
            elif n == 1:
                outputs = self.forward(tensors[0].data)
            else:
                outputs = self.forward(*[t.data for t in tensors])
            if _anomaly.get():
                _check_finite(outputs if isinstance(outputs, tuple) else (outputs,), self,
                              "forward")
            if isinstance(outputs, tuple):
                return tuple([Tensor(y) for y in outputs])
            return Tensor(outputs)
        # an edge per input: the leaf itself, (producing Function, which of its outputs), or
        # None for an input that needs no gradient; the generation is one past the inputs'.
        # One and two inputs (nearly every op) are spelled out: no lists, no comprehensions.
        if n == 2:
            a, b = tensors
            xa, xb = a.data, b.data
            if a.requires_grad:
                ea = a if a.creator is None else (a.creator, a.output_index)
                generation = a.generation
            else:
                ea, generation = None, 0
            if b.requires_grad:
                eb = b if b.creator is None else (b.creator, b.output_index)
                if b.generation > generation:
                    generation = b.generation
            else:
                eb = None
            self.generation, self.parents = generation, (ea, eb)
            self.needs_input_grad = (ea is not None, eb is not None)
            self.input_shapes = (xa.shape, xb.shape)
            self.input_dtypes = (xa.dtype, xb.dtype)
            outputs = self.forward(xa, xb)
        elif n == 1:
            (a,) = tensors
            xa = a.data
            self.generation = generation = a.generation
            self.parents = (a if a.creator is None else (a.creator, a.output_index),)
            self.needs_input_grad = _ONE_GRAD
            self.input_shapes, self.input_dtypes = (xa.shape,), (xa.dtype,)
            outputs = self.forward(xa)
        else:
            generation = 0
            parents = []
            for t in tensors:
                if t.requires_grad:
                    creator = t.creator
                    parents.append(t if creator is None else (creator, t.output_index))
                    if t.generation > generation:
                        generation = t.generation
                else:
                    parents.append(None)
            self.generation = generation
            self.parents = parents = tuple(parents)
            self.needs_input_grad = tuple([p is not None for p in parents])
            datas = [t.data for t in tensors]
            self.input_shapes = tuple([x.shape for x in datas])
            self.input_dtypes = tuple([x.dtype for x in datas])
            outputs = self.forward(*datas)
        single = not isinstance(outputs, tuple)
        if _anomaly.get():
            _check_finite((outputs,) if single else outputs, self, "forward")
        keep = self.keep_inputs
        if keep:
            self._saved_at = _inplace_ops[0]
            self.inputs = tensors if keep == _ALL[n] else \
                tuple([t if i in keep else None for i, t in enumerate(tensors)])
            # The versions at save time, which the engine checks before backward. A tensor
            # without a counter is at version 0, so nothing is stored unless one has one.
            for t in tensors:
                if t._vc is not None:
                    self._input_versions = tuple([0 if u._vc is None else u._vc[0]
                                                  for u in tensors])
                    break
        generation += 1
        if single:  # nearly every op: no tuples but the graph's
            y = outputs
            self.output_meta = ((y.shape, y.dtype),)
            result = Tensor(y, y.dtype.kind == "f")
            result.creator, result.generation = self, generation
            if self.keep_output:
                self._saved_at = _inplace_ops[0]
                self._outputs = (y,)
                # the output's counter: an in-place op on it changes what was saved
                vc = result._vc = [0]
                self._output_vcs = (vc,)
            return result
        self.output_meta = tuple([(y.shape, y.dtype) for y in outputs])
        results = tuple([Tensor(y, y.dtype.kind == "f") for y in outputs])
        for i, t in enumerate(results):
            t.creator, t.output_index, t.generation = self, i, generation
        if self.keep_output:
            self._saved_at = _inplace_ops[0]
            self._outputs = outputs
            vcs = self._output_vcs = tuple([[0] for _ in results])
            for t, vc in zip(results, vcs):
                t._vc = vc
        return results

    def forward(self, *xs: Any) -> Any:
        raise NotImplementedError

    def backward(self, *gys: Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is not differentiable")

    # ---- the torch style: @staticmethod forward(ctx, ...) / backward(ctx, ...), F.apply() ----
    #
    # A subclass whose forward is a staticmethod is written as in torch.autograd.Function:
    # ctx is the Function object itself. The adapters below turn it into minidl's style at
    # class creation, so the engine runs both styles alike and pays nothing per op for it.

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, adapter in (("forward", Function._ctx_forward),
                              ("backward", Function._ctx_backward)):
            method = cls.__dict__.get(name)
            if isinstance(method, staticmethod):
                setattr(cls, "_user_" + name, method)
                setattr(cls, name, adapter)

    @classmethod
    def apply(cls, *args: Any) -> Any:
        """Run the op on ``args`` (Tensors and other values), torch's ``F.apply(x, ...)``.

        For a Function written in minidl's style this is ``cls()(*args)``.
        """
        if not hasattr(cls, "_user_forward"):
            return cls()(*args)
        fn = cls.__new__(cls)
        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        if not positions:
            raise TypeError(f"{cls.__name__}.apply: no argument is a Tensor; pass the "
                            "inputs as minidl Tensors (md.tensor(...))")
        fn._ctx_args = args
        try:
            outputs = Function.__call__(fn, *[args[i] for i in positions])
        finally:
            del fn._ctx_args
        if "parents" in fn.__dict__:
            fn._ctx_positions, fn._ctx_nargs = positions, len(args)
            fn._ctx_record(outputs if isinstance(outputs, tuple) else (outputs,))
        return outputs

    def _ctx_forward(self, *arrays: Any) -> Any:
        args = self.__dict__.get("_ctx_args")
        if args is None:
            raise TypeError(f"{type(self).__name__} has a @staticmethod forward(ctx, ...): call "
                            f"it as {type(self).__name__}.apply(...), not "
                            f"{type(self).__name__}()(...)")
        # ctx.needs_input_grad has one entry per argument, as in torch
        flags = iter(self.needs_input_grad)
        self.needs_input_grad = tuple([next(flags) if isinstance(a, Tensor) else False
                                       for a in args])
        with _GradMode(False):  # torch computes forward without recording
            outputs = type(self)._user_forward(self, *args)
        single = not isinstance(outputs, tuple)
        self._ctx_outputs = (outputs,) if single else outputs
        for y in self._ctx_outputs:
            if not isinstance(y, Tensor):
                raise TypeError(f"{type(self).__name__}.forward must return Tensors, got "
                                f"{type(y).__name__}")
        arrays = tuple([y.data for y in self._ctx_outputs])
        return arrays[0] if single else arrays

    def _ctx_backward(self, *gys: Tensor) -> Any:
        if "_ctx_nargs" not in self.__dict__:
            raise RuntimeError(_release_message(self))
        grads = type(self)._user_backward(self, *gys)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != self._ctx_nargs:
            raise RuntimeError(f"{type(self).__name__}.backward returned {len(grads)} "
                               f"gradients for {self._ctx_nargs} arguments of forward "
                               "(return None for the ones that need none)")
        return tuple([grads[i] for i in self._ctx_positions])

    def _ctx_record(self, outputs: tuple[Tensor, ...]) -> None:
        """After a recorded ``apply``: resolve what forward saved (an output of forward is
        saved as this node's output, so create_graph differentiates through it) and drop
        non-differentiable outputs from the graph."""
        inner = self.__dict__.pop("_ctx_outputs")
        saved = []
        for t in self.__dict__.pop("_to_save", ()):
            index = next((i for i, y in enumerate(inner) if y is t), None)
            if t is None:
                saved.append(None)
            elif index is None:
                saved.append((t, t._version, None))
            else:
                saved.append((index, 0, _new_counter(outputs[index])))
        self._ctx_saved = tuple(saved)
        self._saved_at = _inplace_ops[0]
        if any(s is not None and isinstance(s[0], int) for s in saved):
            self._outputs = tuple([y.data for y in inner])
            self._output_vcs = tuple([t._vc for t in outputs])
        for t in self.__dict__.pop("_non_differentiable", ()):
            for y, out in zip(inner, outputs):
                if y is t:
                    out.requires_grad, out.creator = False, None

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        """torch style: keep ``tensors`` (inputs or outputs of forward) for backward."""
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        """torch style: what forward saved; outputs come back attached to this node."""
        saved = self.__dict__.get("_ctx_saved")
        if saved is None:
            raise RuntimeError(_release_message(self))
        return tuple([s if s is None else self.output(s[0]) if isinstance(s[0], int)
                      else s[0] for s in saved])

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """torch style: these outputs of forward get no gradient (indices, masks)."""
        self._non_differentiable = tensors

    def output(self, i: int = 0) -> Tensor:
        """Output ``i`` as a Tensor attached to this node (for use in ``backward``)."""
        t = Tensor(self._outputs[i], requires_grad=_grad_enabled.get())
        t.creator, t.output_index, t.generation = self, i, self.generation + 1
        t._vc = self._output_vcs[i]
        return t

    def _hooks_for(self, index: int) -> list:
        hooks = self.__dict__.setdefault("_output_hooks", {})
        return hooks.setdefault(index, [])

    def __lt__(self, other: Function) -> bool:  # heap tie-break, never used for logic
        return id(self) < id(other)


class ViewFunction(Function):
    """A Function whose output can be a view of its first input's memory (reshape,
    transpose, basic indexing, split): such an output shares the input's version counter,
    so an in-place change through either is seen by every Function that saved the other.

    ``view_step(i, y, x)`` says whether output array ``i`` (``y``) is a view of input
    array ``x``: None if not, else a function that replays the view on an array or a
    Tensor (``lambda a: a[index]``), which in-place ops on the view use to write through
    to the base.
    """

    def view_step(self, i: int, y: Any, x: Any) -> Callable[[Any], Any] | None:
        raise NotImplementedError

    def __call__(self, *inputs: Any) -> Any:
        out = Function.__call__(self, *inputs)
        base = inputs[0]
        if not isinstance(base, Tensor):
            return out
        if isinstance(out, tuple):
            for i, y in enumerate(out):
                step = self.view_step(i, y.data, base.data)
                if step is not None:
                    _mark_view(y, base, step)
        else:
            step = self.view_step(0, out.data, base.data)
            if step is not None:
                _mark_view(out, base, step)
        return out


def _mark_view(view: Tensor, base: Tensor, step: Callable[[Any], Any]) -> None:
    """Make ``view`` share ``base``'s version counter and remember how to find it in the
    base's root: ``_view = (root, replay, version)``, ``replay(root)`` giving the view again."""
    if base._vc is None:
        base._vc = [0]
    vc = view._vc = base._vc
    if base._view is None:
        view._view = (base, step, vc[0])
    else:
        root, outer, _ = base._view
        view._view = (root, lambda a: step(outer(a)), vc[0])


def _refresh_view(view: Tensor) -> None:
    """Rebase a view onto its root's graph as it is now. The root (or another view of it)
    was changed in place since this view was taken, so the view's values come from the
    root's new node, not from the one the view was made from (torch does the same)."""
    root, replay, _ = view._view
    if root.requires_grad:
        fresh = replay(root)
        view.creator, view.output_index = fresh.creator, fresh.output_index
        view.generation, view.requires_grad = fresh.generation, fresh.requires_grad
    view._view = (root, replay, view._vc[0])


def _new_counter(t: Tensor) -> list[int]:
    """A fresh version counter for the new tensor ``t`` (an output saved for backward)."""
    vc = t._vc = [0]
    return vc


def _modified_error(fn: Function, shape: tuple[int, ...], now: int, saved: int) -> RuntimeError:
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: [{type(fn).__name__}] saved tensor of shape {tuple(shape)} is "
        f"at version {now}; expected version {saved} instead. Hint: the tensor was changed "
        f"in place (+=, x[i] = v, an _-method, or through a view) after {type(fn).__name__} "
        "saved it for backward; use the out-of-place form (x = x + y), or modify a "
        ".clone() instead")


def _check_saved_versions(fn: Function, d: dict) -> None:
    """Raise if a tensor ``fn`` saved for backward was modified in place since."""
    inputs = d.get("inputs")
    if inputs is not None and "_ctx_saved" not in d:
        versions = d.get("_input_versions") or (0,) * len(inputs)
        for t, v in zip(inputs, versions):
            if t is not None and t._vc is not None and t._vc[0] != v:
                raise _modified_error(fn, t.shape, t._vc[0], v)
    vcs = d.get("_output_vcs")
    if vcs is not None and "_ctx_saved" not in d:
        for (shape, _), vc in zip(fn.output_meta, vcs):
            if vc[0]:
                raise _modified_error(fn, shape, vc[0], 0)
    for s in d.get("_ctx_saved", ()):
        if s is not None:
            t, v, vc = s
            now = t._version if vc is None else vc[0]
            if now != v:
                raise _modified_error(fn, t.shape if vc is None else fn.output_meta[t][0],
                                      now, v)


# ---- the engine's own ops ------------------------------------------------------------------

class Accumulate(Function):
    """``a + b`` for two gradients of one tensor: how the engine sums the contributions from
    the tensor's uses. a, b: the tensor's shape -> the same shape."""

    def forward(self, a: Any, b: Any) -> Any:
        if a.shape != b.shape:
            raise ValueError(f"accumulate: gradients of shapes {tuple(a.shape)} and "
                             f"{tuple(b.shape)} for one tensor")
        return a + b

    def backward(self, gy: Tensor) -> tuple[Tensor, Tensor]:
        return gy, gy


class Cast(Function):
    """Differentiable dtype cast: x (any shape) -> x as ``dtype``; the gradient is cast back."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)

    def forward(self, x: Any) -> Any:
        return x.astype(self.dtype)

    def backward(self, gy: Tensor) -> Tensor:
        return _cast(gy, self.input_dtypes[0])


class ToDevice(Function):
    """Differentiable copy to ``device``: x (any shape) -> the same values there; the
    gradient is copied back."""

    def __init__(self, device: str) -> None:
        self.device = device

    def forward(self, x: Any) -> Any:
        self.source = device_of(x)
        return to_device(x, self.device)

    def backward(self, gy: Tensor) -> Tensor:
        return gy if gy.device == self.source else ToDevice(self.source)(gy)


def _cast(x: Tensor, dtype: Any) -> Tensor:
    return x if x.dtype == dtype else Cast(dtype)(x)


# needs_input_grad of an op that records nothing, by number of inputs (shared, immutable)
_NO_GRAD = tuple((False,) * n for n in range(8))
# keep_inputs that name every input, by number of inputs: then ``inputs`` is the input tuple
_ALL = tuple(tuple(range(n)) for n in range(8))
_ONE_GRAD = (True,)


def _as_tensors(inputs: Sequence[Any], fn: Function) -> tuple[Tensor, ...]:
    """Wrap scalars and arrays as constant Tensors and check that all share one device."""
    out = list(inputs)
    like = None
    for t in out:
        if isinstance(t, Tensor):
            if like is None or (like.data.dtype.kind != "f" and t.data.dtype.kind == "f"):
                like = t
    for i, t in enumerate(out):
        if not isinstance(t, Tensor):
            out[i] = as_tensor(t, like=like)
    _check_devices(out, fn)
    return tuple(out)


def _check_devices(tensors: Sequence[Tensor], fn: Function) -> None:
    """Raise if the tensors' arrays are not all on one device."""
    kind = type(tensors[0].data)
    for t in tensors:
        if type(t.data) is not kind:
            a, b = tensors[0], t
            if a.device != b.device:
                raise ValueError(
                    f"{type(fn).__name__}: operands are on different devices: "
                    f"{a.shape} on '{a.device}' and {b.shape} on '{b.device}'; "
                    "move one with .to(device)")


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """``x`` as a Tensor; Python scalars take the dtype and device of ``like``."""
    if isinstance(x, Tensor):
        return x
    if like is not None:
        xp = get_array_module(like.data)
        if isinstance(x, (bool, int, float)):
            dtype = like.dtype if like.dtype.kind == "f" or isinstance(x, int) else np.float32
            return Tensor(xp.asarray(x, dtype=dtype))
        xa = get_array_module(x)
        # a NumPy scalar (np.float32(0.5)) is a number, as on the CPU, not a host array
        if xa is not xp and hasattr(x, "shape") and not isinstance(x, np.generic):
            raise ValueError(f"operands are on different devices: array {tuple(x.shape)} on "
                             f"'{device_of(x)}' and tensor {like.shape} on '{like.device}'")
        return Tensor(xp.asarray(x))
    return tensor(x)


def tensor(data: Any, dtype: Any = None, device: str | None = None,
           requires_grad: bool = False) -> Tensor:
    """Create a Tensor from a list, scalar, NumPy/CuPy array or Tensor.

    The data is always copied. Floating NumPy/CuPy arrays keep their dtype (float64 stays
    float64); Python scalars and lists of floats become float32; integers stay integers
    (int64). The tensor goes to ``device``, else to the default device (a CuPy array stays
    on 'cuda').
    """
    if isinstance(data, Tensor):
        data = data.data
    # CuPy arrays stay on the GPU; everything else (NumPy arrays included) goes to the default
    # device, so that a script runs unchanged under MINIDL_DEVICE=cuda.
    if device is None:
        device = "cuda" if device_of(data) == "cuda" else get_default_device()
    xp = xp_for(device)
    if hasattr(data, "dtype"):
        moved = to_device(data, device)
        # copy like torch.tensor: an optimiser step must never write into the caller's array.
        # A moved array is already a fresh copy; asarray casts it only if dtype asks, where
        # array(copy=False) would raise (NumPy 2 and CuPy 14 forbid any copy with it).
        arr = xp.array(moved, dtype=dtype) if moved is data else xp.asarray(moved, dtype=dtype)
    else:
        host = np.asarray(data)
        if dtype is None and host.dtype == np.float64:
            dtype = np.float32
        arr = xp.asarray(host, dtype=dtype)
    return Tensor(arr, requires_grad=requires_grad)


def _owns_writable(a: Any) -> bool:
    """Whether ``a`` owns its memory and may be written (not a view, not read-only)."""
    return a.base is None and getattr(a.flags, "writeable", True)


def _accumulate(old: Tensor | None, new: Tensor, create_graph: bool) -> Tensor:
    if old is None:
        return new
    return Accumulate()(old, new) if create_graph else Tensor(old.data + new.data)


def _apply_hooks(hooks: list | None, g: Tensor) -> Tensor:
    for hook in hooks or ():
        replaced = hook(g)
        if replaced is not None:
            g = replaced
    return g


# ---- the backward pass --------------------------------------------------------------------
#
# _run_backward (at the end) is the whole engine. It seeds the roots' gradients
# (_Backward.deliver), then runs _Backward.run: until no Function waits, it takes the newest
# one (from _Backward.next, or the heap once the graph branches), gives it one gradient per
# output (_output_grads, for hooks, several outputs or an unused one), calls its backward
# (_call_backward: its fast_backward on arrays, else backward on Tensors), delivers the
# results to its inputs, summing where a tensor was used twice, and frees it. Last, it
# stores the leaves' summed gradients (_store_leaf_grads).

class _Backward:
    """The state of one backward pass.

    ``heap`` holds the Functions that have received a gradient, newest generation first, and
    ``pending`` their output gradients so far (one slot per output, summed as they arrive).
    While only one Function waits (a chain: the graph has not branched), it is kept in
    ``next`` instead of the heap, which is the same order at less cost. A leaf's gradient is
    summed in ``leaf_grads`` over all its uses and stored after the walk, so that the leaf's
    hooks run once on the total (as for non-leaves, and in PyTorch).

    Unless the backward is recorded (``create_graph``), gradients travel between Functions
    as raw arrays, not Tensors (``arrays``): they are wrapped only for a backward written
    with Tensor ops, a hook, or a result, and a Function with a ``fast_backward`` never
    makes a Tensor at all.
    """

    def __init__(self, create_graph: bool, captured_edges: dict) -> None:
        self.create_graph = create_graph
        self.arrays = not create_graph
        self.captured_edges = captured_edges
        self.pending: dict[Function, list] = {}
        self.heap: list[tuple[int, int, Function]] = []
        self.next: Function | None = None
        self.order = itertools.count()  # among equal generations: first reached, first run
        self.leaf_grads: dict[int, list] = {}

    #: whether a leaf's use is reported to :meth:`used` (post-accumulate-grad hooks)
    hooked = False

    def used(self, leaf: Tensor) -> None:
        """One of the edges to ``leaf`` has delivered its gradient (or None)."""

    def add(self, old: Any, new: Any) -> Any:
        """The sum of two gradients of one tensor (arrays, or Tensors when recorded)."""
        if old is None:
            return new
        return old + new if self.arrays else _accumulate(old, new, self.create_graph)

    def deliver(self, edge: Any, g: Any) -> None:
        """Add ``g`` to the gradient of ``edge``: a leaf, or (Function, output index)."""
        if type(edge) is not tuple:
            entry = self.leaf_grads.get(id(edge))
            if entry is None:
                self.leaf_grads[id(edge)] = [edge, g]
            else:
                entry[1] = self.add(entry[1], g)
            if self.hooked:
                self.used(edge)
            return
        fn, index = edge
        slots = self.pending.get(fn)
        if slots is None:
            slots = self.pending[fn] = [None] * len(fn.output_meta) \
                if hasattr(fn, "output_meta") else [None] * (index + 1)
            self.push(fn)
        slots[index] = g if slots[index] is None else self.add(slots[index], g)

    def push(self, fn: Function) -> None:
        """``fn`` has got its first gradient: it waits for its turn."""
        if self.next is None and not self.heap:
            self.next = fn
            return
        if self.next is not None:  # the graph branches: from now on the heap orders them
            waiting, self.next = self.next, None
            heapq.heappush(self.heap, (-waiting.generation, next(self.order), waiting))
        heapq.heappush(self.heap, (-fn.generation, next(self.order), fn))

    def run(self, retain_graph: bool, anomaly: bool) -> None:
        """Until no Function waits: take the newest one (every consumer of its outputs has a
        larger generation, so all of them have run and delivered), run its backward, send
        each input's gradient on to that input's producer (summing where a tensor was used
        twice) and free the Function. One loop with the steps written out: it runs once per
        node of the graph."""
        arrays, hooked = self.arrays, self.hooked
        fast = arrays and not anomaly
        simple = not self.captured_edges
        pending, heap, add = self.pending, self.heap, self.add
        while True:
            fn = self.next
            if fn is not None:
                self.next = None
            elif heap:
                fn = heapq.heappop(heap)[2]
            else:
                return
            gys = pending.pop(fn)
            d = fn.__dict__
            if "parents" not in d:
                raise RuntimeError(_release_message(fn))
            saved_at = d.get("_saved_at")
            if saved_at is not None and saved_at != _inplace_ops[0]:
                _check_saved_versions(fn, d)
            if len(gys) != 1 or gys[0] is None or not simple or "_output_hooks" in d:
                gys = _output_grads(fn, gys, self)
            gxs = _call_backward(fn, gys, arrays, fast, anomaly)
            unused = None
            for edge, gx, shape, dtype in zip(d["parents"], gxs, d["input_shapes"],
                                              d["input_dtypes"]):
                if edge is None:
                    continue
                if gx is None:
                    if hooked and type(edge) is not tuple:  # one edge fewer to wait for
                        unused = [edge] if unused is None else unused + [edge]
                    continue
                if arrays:
                    if type(gx) is not np.ndarray:
                        gx = gx.data if isinstance(gx, Tensor) else Tensor(gx).data
                elif not isinstance(gx, Tensor):
                    gx = Tensor(gx)
                if gx.shape != shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of "
                                       f"shape {tuple(gx.shape)} for an input of shape {shape}")
                if gx.dtype != dtype:
                    gx = gx.astype(dtype) if arrays else \
                        Cast(dtype)(gx) if self.create_graph else Tensor(gx.data.astype(dtype))
                if type(edge) is not tuple:
                    self.deliver(edge, gx)  # a leaf
                    continue
                producer, index = edge
                slots = pending.get(producer)
                if slots is None:
                    slots = pending[producer] = [None] * len(producer.output_meta) \
                        if hasattr(producer, "output_meta") else [None] * (index + 1)
                    if self.next is None and not heap:
                        self.next = producer
                    else:
                        self.push(producer)
                    slots[index] = gx
                else:
                    slots[index] = gx if slots[index] is None else add(slots[index], gx)
            if unused is not None:
                for edge in unused:
                    self.used(edge)
            if not retain_graph:  # drop all it saved: it can no longer be differentiated
                generation = d["generation"]
                d.clear()
                d["generation"] = generation


def _output_grads(fn: Function, gys: list, walk: _Backward) -> list:
    """One gradient per output of ``fn``, as its backward expects: each after that output's
    hooks (and captured, for :func:`grad` of a non-leaf), zeros for an output nobody used."""
    output_hooks = fn.__dict__.get("_output_hooks")
    arrays = walk.arrays
    for i, (shape, dtype) in enumerate(fn.output_meta):
        g = gys[i]
        if g is not None and output_hooks and output_hooks.get(i):
            g = _apply_hooks(output_hooks[i], Tensor(g) if arrays else g)
            if arrays:
                g = g.data
        if g is not None and (fn, i) in walk.captured_edges:
            slot = walk.captured_edges[(fn, i)]
            slot[0] = _accumulate(slot[0], Tensor(g) if arrays else g, walk.create_graph)
        if g is None:
            xp = get_array_module(*[y if arrays else y.data for y in gys if y is not None])
            g = xp.zeros(shape, dtype) if arrays else Tensor(xp.zeros(shape, dtype))
        gys[i] = g
    return gys


def _call_backward(fn: Function, gys: list, arrays: bool, fast: bool, anomaly: bool) -> tuple:
    """``fn``'s backward on the output gradients ``gys`` (arrays if ``arrays``, else
    Tensors) as a tuple of one gradient (or None) per input, checked. ``fast``: its
    ``fast_backward`` may be used."""
    gxs: Any = NotImplemented
    if fast and fn.fast_backward is not None:
        gxs = fn.fast_backward(*gys)
    if gxs is NotImplemented:
        if arrays:
            gys = [Tensor(g) for g in gys]
        if anomaly:
            # the ops inside a backward are not checked one by one: a NaN they make is
            # reported below as this Function's backward, which is where it appeared
            inner = _anomaly.set(False)
            try:
                gxs = fn.backward(*gys)
            finally:
                _anomaly.reset(inner)
        else:
            gxs = fn.backward(*gys)
    if type(gxs) is not tuple:
        gxs = (gxs,)
    if len(gxs) != len(fn.parents):
        raise RuntimeError(f"{type(fn).__name__}.backward returned {len(gxs)} gradients "
                           f"for {len(fn.parents)} inputs")
    if anomaly:
        _check_finite([g.data if isinstance(g, Tensor) else g for g in gxs], fn, "backward")
    return gxs


def _store_leaf_grads(leaf_grads: dict[int, list], create_graph: bool,
                      capture: dict[str, Any] | None, handed_out: set[int]) -> None:
    """Run each leaf's hooks on its total gradient (an array unless ``create_graph``), then
    add it to ``.grad`` (or to the capture slot of :func:`grad`). ``handed_out`` holds the
    ids of the arrays the caller passed in as gradients, which a ``.grad`` must not share
    memory with."""
    for leaf, g in leaf_grads.values():
        if not create_graph:
            g = Tensor(g)
        g = _apply_hooks(leaf._hooks, g)
        if capture is not None:
            slot = capture["leaves"].get(id(leaf))
            if slot is not None:
                slot[0] = _accumulate(slot[0], g, create_graph)
            continue
        _store_leaf_grad(leaf, g, create_graph, handed_out)
        if leaf._post_hooks:
            for hook in list(leaf._post_hooks):
                hook(leaf)


def _store_leaf_grad(leaf: Tensor, g: Tensor, create_graph: bool, handed_out: set[int]) -> None:
    """Add the gradient ``g`` to ``leaf.grad``."""
    old = leaf.grad
    if create_graph:
        leaf.grad = _accumulate(old, g, True)
    elif old is None:
        # .grad must own its array: a broadcast view (read-only, stride 0), an array
        # shared with another leaf (x + y gives both the same one) or the caller's own
        # gradient would break or be corrupted by in-place updates (accumulation,
        # gradient clipping).
        if g.data.base is not None or id(g.data) in handed_out:
            g = Tensor(g.data.copy(order="K"))  # keep its layout (channels-last)
        handed_out.add(id(g.data))
        leaf.grad = g.detach()
    elif _owns_writable(old.data) and old.data.dtype == g.data.dtype:
        # Accumulating across backward calls (no zero_grad in between): add in place,
        # as torch does, instead of allocating a new gradient every time.
        old.data += g.data
    else:
        leaf.grad = Tensor(old.data + g.data)


class _HookedBackward(_Backward):
    """A backward pass that also runs post-accumulate-grad hooks as early as possible.

    Before the walk it counts, for every leaf that has such hooks, the edges that lead to
    it from the Functions this backward can reach (and from the roots). Each Function that
    runs uses up its edges; when a leaf's count reaches zero its gradient is final, so it
    is stored in ``.grad`` and its hooks run at once, while the walk goes on. A leaf whose
    count never reaches zero (a branch that delivered no gradient) is finished at the end.
    """

    hooked = True

    def __init__(self, create_graph: bool, captured_edges: dict, roots: Sequence[Tensor],
                 handed_out: set[int]) -> None:
        super().__init__(create_graph, captured_edges)
        self.handed_out = handed_out
        self.uses: dict[int, int] = {}
        seen: set[int] = set()
        stack = [root._edge() for root in roots]
        while stack:
            edge = stack.pop()
            if isinstance(edge, Tensor):
                if edge._post_hooks:
                    self.uses[id(edge)] = self.uses.get(id(edge), 0) + 1
                continue
            fn = edge[0]
            if id(fn) not in seen:
                seen.add(id(fn))
                stack.extend([p for p in fn.__dict__.get("parents", ()) if p is not None])

    def used(self, leaf: Tensor) -> None:
        left = self.uses.get(id(leaf))
        if left is None:
            return
        if left > 1:
            self.uses[id(leaf)] = left - 1
            return
        del self.uses[id(leaf)]
        entry = self.leaf_grads.pop(id(leaf), None)
        if entry is not None:
            _store_leaf_grads({id(leaf): entry}, self.create_graph, None, self.handed_out)


#: for each backward pass running (nested ones stack), what runs once it has finished
_finish_callbacks: list[list[Callable[[], None]]] = []


def in_backward() -> bool:
    """Whether a backward pass is running."""
    return bool(_finish_callbacks)


def queue_callback(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once the backward pass now running has finished, after every gradient
    is stored (torch's ``Variable._execution_engine.queue_callback``; the data-parallel
    wrapper uses it to finish the sums of parameters that the loss did not reach)."""
    if not _finish_callbacks:
        raise RuntimeError("queue_callback: no backward pass is running; call it from a hook")
    _finish_callbacks[-1].append(fn)


def _run_backward(roots: Sequence[Tensor], root_grads: Sequence[Tensor], retain_graph: bool,
                  create_graph: bool, capture: dict[str, Any] | None = None) -> None:
    """The engine. With ``capture`` ({"leaves": {id(leaf): slot}, "edges": {(fn, i): slot}}),
    gradients of those tensors are stored in their slots instead of being accumulated into
    ``.grad`` (used by :func:`grad`)."""
    token = _grad_enabled.set(create_graph)  # record the backward pass only for create_graph
    anomaly = _anomaly.get()
    edges = {} if capture is None else capture.get("edges", {})
    handed_out = {id(g.data) for g in root_grads}
    walk = _HookedBackward(create_graph, edges, roots, handed_out) \
        if _post_hooked and capture is None else _Backward(create_graph, edges)
    _finish_callbacks.append([])
    try:
        for root, g in zip(roots, root_grads):
            walk.deliver(root._edge(), g.data if walk.arrays else g)
        walk.run(retain_graph, anomaly)
        _store_leaf_grads(walk.leaf_grads, create_graph, capture, handed_out)
        for fn in _finish_callbacks[-1]:
            fn()
    finally:
        _finish_callbacks.pop()
        _grad_enabled.reset(token)


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned instead of accumulated.

    Like ``torch.autograd.grad``: leaves' ``.grad`` are left untouched.
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    gos = []
    for o, go in zip(outs, grad_outputs):
        if go is None:
            if o.size != 1:
                raise RuntimeError("grad: grad_outputs needed for non-scalar output of shape "
                                   f"{o.shape}")
            go = Tensor(get_array_module(o.data).ones_like(o.data))
        gos.append(as_tensor(go, like=o))
    leaves: dict[int, list] = {}
    edges: dict[tuple, list] = {}
    slots = []
    for t in ins:
        slot: list = [None]
        if t.creator is None:
            leaves[id(t)] = slot
        else:
            edges[(t.creator, t.output_index)] = slot
        slots.append(slot)
    if retain_graph is None:
        retain_graph = create_graph
    _run_backward(outs, gos, retain_graph, create_graph, capture={"leaves": leaves, "edges": edges})
    result = []
    for t, slot in zip(ins, slots):
        if slot[0] is None and not allow_unused:
            raise RuntimeError(f"grad: an input of shape {t.shape} is not used by the outputs; "
                               "pass allow_unused=True")
        result.append(slot[0])
    return tuple(result)
