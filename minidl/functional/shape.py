"""Shape ops: reshape, transpose and friends, indexing, cat/stack/split and padding.

Ops that build a new array from a feature map keep that map's memory layout
(:func:`memory_order`, :func:`empty_in_order`), so channels-last data stays channels-last.
Reshape, transpose, basic indexing and split return views of their input's memory where
NumPy does, as ``ViewFunction`` s: a view shares its base's version counter, and an
in-place op on it writes through to the base (``x[i] = v`` and the in-place ops are in
``inplace.py``).
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..autograd import Function, Tensor, ViewFunction, as_tensor
from ..backend import get_array_module, scatter_add
from .validation import keywords, resolve_dim


def memory_order(a: Any) -> tuple[int, ...]:
    """The axes of array ``a`` from the outermost in memory to the innermost.

    (0, 1, 2, 3) for a C-ordered NCHW array; (0, 2, 3, 1) for the channels-last feature
    maps the CPU conv kernels return.
    """
    return tuple(sorted(range(a.ndim), key=lambda i: -a.strides[i]))


def empty_in_order(xp: Any, shape: tuple[int, ...], dtype: Any,
                   order: tuple[int, ...] | None) -> Any:
    """An uninitialised array of ``shape`` whose axes lie in memory in ``order``.

    Ops that build a new array from a feature map (padding, concatenation, the gradient of
    indexing) use it to keep that map's layout: NumPy would otherwise hand back C order,
    and a channels-last map turned NCHW costs a transposing copy in the next conv.
    """
    if order is None or len(order) != len(shape) or list(order) == sorted(order):
        return xp.empty(shape, dtype)
    stored = xp.empty(tuple(shape[i] for i in order), dtype)
    return stored.transpose(tuple(int(i) for i in np.argsort(order)))


class Reshape(ViewFunction):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def view_step(self, i, y, x):
        shape = self.shape
        if y.base is None:  # NumPy had to copy (a transposed input, say)
            return None
        return lambda a: Reshape(shape)(a) if isinstance(a, Tensor) else a.reshape(shape)

    def forward(self, x):
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) to {self.shape}") from None

    def backward(self, gy):
        return reshape(gy, self.input_shapes[0])


class Transpose(ViewFunction):
    def __init__(self, axes: tuple[int, ...] | None) -> None:
        self.axes = axes

    def view_step(self, i, y, x):
        axes = self.axes
        return lambda a: Transpose(axes)(a) if isinstance(a, Tensor) else a.transpose(axes)

    def forward(self, x):
        axes = tuple(reversed(range(x.ndim))) if self.axes is None else self.axes
        if sorted(a % builtins.max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"permute: axes {axes} are not a permutation of the "
                             f"{x.ndim} dims of shape {tuple(x.shape)}")
        self.axes = tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, gy):
        return transpose(gy, tuple(int(i) for i in np.argsort(self.axes)))


def _index_arrays(index: Any) -> Any:
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    # a bool is an int to isinstance, but to NumPy it is a mask (an advanced index)
    return all((isinstance(i, (int, np.integer, slice)) and not isinstance(i, (bool, np.bool_)))
               or i is None or i is Ellipsis for i in items)


class GetItem(ViewFunction):
    """``x[index]``: a view of x's memory for a basic index (ints, slices, None, ...), as in
    NumPy and torch (``x[0, 1]`` too: a 0-d view, not a copy); a copy for an advanced one."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.view = _view_index(index) if _is_basic(index) else None

    def forward(self, x):
        try:
            y = get_array_module(x).asarray(x[self.index]) if self.view is None else \
                x[self.view]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor shape {tuple(x.shape)})") from None
        self.order = memory_order(x)
        return y

    def view_step(self, i, y, x):
        index, view = self.index, self.view
        if view is None:
            return None
        return lambda a: GetItem(index)(a) if isinstance(a, Tensor) else a[view]

    def backward(self, gy):
        return GetItemGrad(self.index, self.input_shapes[0], self.order)(gy)


def _view_index(index: Any) -> Any:
    """A basic index that makes NumPy return a view even when it picks one element
    (``a[0, 1]`` is a scalar copy, ``a[0, 1, ...]`` a 0-d view)."""
    items = index if isinstance(index, tuple) else (index,)
    return items if Ellipsis in items else items + (Ellipsis,)  # a basic index: no arrays


class GetItemGrad(Function):
    """Scatter-add ``gy`` into zeros of the source shape; repeated indices accumulate.

    ``order`` is the memory order of the source's axes (see :func:`memory_order`): the
    gradient is laid out like the tensor it is the gradient of.
    """

    def __init__(self, index: Any, shape: tuple[int, ...],
                 order: tuple[int, ...] | None = None) -> None:
        self.index, self.shape, self.order = index, shape, order

    def forward(self, gy):
        xp = get_array_module(gy)
        gx = empty_in_order(xp, self.shape, gy.dtype, self.order)
        gx.fill(0)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:
            scatter_add(gx, self.index, gy)
        return gx

    def backward(self, ggx):
        return getitem(ggx, self.index)


class Concat(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        ref = xs[0]
        axis = self.axis % builtins.max(ref.ndim, 1)
        for x in xs[1:]:
            if x.ndim != ref.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, ref.shape))
                                         if i != axis):
                raise ValueError(f"cat: shapes {[tuple(x.shape) for x in xs]} differ outside "
                                 f"axis {self.axis}")
        self.axis = axis
        shape = list(ref.shape)
        shape[axis] = builtins.sum(x.shape[axis] for x in xs)
        # keep the inputs' memory layout (NumPy would return C order, i.e. NCHW for
        # channels-last feature maps, and every later conv would transpose it back)
        out = empty_in_order(xp, tuple(shape), np.result_type(*[x.dtype for x in xs]),
                             memory_order(ref))
        return xp.concatenate(xs, axis=axis, out=out)

    def backward(self, gy):
        sizes = [s[self.axis] for s in self.input_shapes]
        return split(gy, sizes, axis=self.axis)


class Split(ViewFunction):
    def __init__(self, sizes: Sequence[int], axis: int) -> None:
        self.sizes, self.axis = list(sizes), axis

    def view_step(self, i, y, x):
        start = builtins.sum(self.sizes[:i])
        index = (slice(None),) * self.axis + (slice(start, start + self.sizes[i]),)
        return lambda a: GetItem(index)(a) if isinstance(a, Tensor) else a[index]

    def forward(self, x):
        axis = self.axis % x.ndim
        if builtins.sum(self.sizes) != x.shape[axis]:
            raise ValueError(f"split: sizes {self.sizes} do not add up to {x.shape[axis]} "
                             f"(axis {self.axis} of shape {tuple(x.shape)})")
        self.axis = axis
        xp = get_array_module(x)
        return tuple(xp.split(x, np.cumsum(self.sizes)[:-1].tolist(), axis=axis))

    def backward(self, *gys):
        return cat(list(gys), axis=self.axis)


class Pad(Function):
    """Constant padding; ``widths`` is a per-axis list of (before, after), where a negative
    width crops. Linear, and its adjoint is the opposite padding (with zeros)."""

    def __init__(self, widths: list[tuple[int, int]], value: float) -> None:
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = get_array_module(x)
        shape = tuple(n + b + a for n, (b, a) in zip(x.shape, self.widths))
        y = empty_in_order(xp, shape, x.dtype, memory_order(x))  # x's layout, not C order
        if any(b > 0 or a > 0 for b, a in self.widths):
            y.fill(self.value)
        src = tuple(slice(builtins.max(-b, 0), n - builtins.max(-a, 0))
                    for n, (b, a) in zip(x.shape, self.widths))
        dst = tuple(slice(builtins.max(b, 0), builtins.max(b, 0) + s.stop - s.start)
                    for s, (b, _) in zip(src, self.widths))
        y[dst] = x[src]
        return y

    def backward(self, gy):
        return Pad([(-b, -a) for b, a in self.widths], 0.0)(gy)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_NUMPY_PAD_MODES = {"edge": "replicate", "wrap": "circular", "symmetric": None}


def _pad_index(mode: str, n: int, before: int, after: int) -> np.ndarray:
    """Source positions of the output positions -before .. n+after-1 along one axis."""
    o = np.arange(-before, n + after)
    if mode == "reflect":                 # mirror without repeating the edge: -1 -> 1
        o = np.abs(o)
        return np.where(o > n - 1, 2 * (n - 1) - o, o)
    if mode == "replicate":
        return np.clip(o, 0, n - 1)
    return o % n                          # circular


# ---- wrappers -----------------------------------------------------------------------------

def reshape(x: Tensor, shape: Sequence[int] | int, *more: int) -> Tensor:
    """The same data viewed with a new shape (one dimension may be -1)."""
    shape = (shape, *more) if isinstance(shape, int) else tuple(shape)
    if x.shape == shape:
        return x
    return Reshape(shape)(x)


def transpose(x: Tensor, *dims: Any, axes: Sequence[int] | None = None) -> Tensor:
    """torch's ``transpose(x, dim0, dim1)`` swaps two dims; NumPy's meanings stay for the rest.

    Two ints swap those dims (torch's reading; on a 2-D tensor ``transpose(x, 1, 0)`` and
    ``transpose(x, 0, 1)`` both transpose it, as in torch). One tuple or list, ``axes=``, or
    three or more ints are a full permutation, as in NumPy; no argument reverses the dims.
    """
    if axes is not None:
        if dims:
            raise TypeError("transpose: pass either dims or axes=, not both")
        return Transpose(tuple(axes))(x)
    if len(dims) == 2 and all(isinstance(d, (int, np.integer)) for d in dims):
        return swapaxes(x, int(dims[0]), int(dims[1]))
    if len(dims) == 1 and dims[0] is None:
        dims = ()
    if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
        return Transpose(tuple(dims[0]))(x)
    if len(dims) == 1:
        raise TypeError(f"transpose: one dim ({dims[0]}) given; swap two with "
                        f"transpose(x, dim0, dim1) or permute with a tuple of all {x.ndim}")
    return Transpose(tuple(dims) if dims else None)(x)


def permute(x: Tensor, *dims: int) -> Tensor:
    """``x.permute(0, 2, 3, 1)`` or ``x.permute((0, 2, 3, 1))``: reorder all dims."""
    if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
        dims = tuple(dims[0])
    return Transpose(tuple(int(d) for d in dims))(x)


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    """Exchange two dims (``torch.swapaxes`` / ``transpose(x, a, b)``)."""
    nd = builtins.max(x.ndim, 1)
    for d in (a, b):
        if not -nd <= d < nd:
            raise ValueError(f"transpose: dim {d} is out of range for a tensor of shape "
                             f"{tuple(x.shape)}")
    axes = list(range(x.ndim))
    if x.ndim:
        axes[a], axes[b] = axes[b], axes[a]
    return Transpose(tuple(axes))(x)


def _dim_index(d: int, ndim: int, op: str, what: str = "dim") -> int:
    """``d`` as an index into ``ndim`` dims (negative counts from the end), or ValueError."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise TypeError(f"{op}: {what} must be an int, got {d!r}")
    if not -ndim <= d < ndim:
        raise ValueError(f"{op}: {what}={d} is out of range for a {ndim - (op == 'unsqueeze')}"
                         f"-D tensor (valid: {-ndim}..{ndim - 1})")
    return int(d) % ndim


@keywords
def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.flatten`` (default: all, so a
    1-D result; ``nn.Flatten`` keeps the batch dim). A 0-D tensor becomes 1-D."""
    nd = builtins.max(x.ndim, 1)
    s = _dim_index(start_dim, nd, "flatten", "start_dim")
    e = _dim_index(end_dim, nd, "flatten", "end_dim")
    if s > e:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} for a "
                         f"tensor of shape {tuple(x.shape)}")
    if x.ndim == 0:
        return reshape(x, (1,))
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


@keywords
def squeeze(x: Tensor, dim: int | Sequence[int] | None = None, *,
            axis: int | Sequence[int] | None = None) -> Tensor:
    """Drop size-1 dims: all of them, or only ``dim`` (an int or a tuple).

    As in torch, a given ``dim`` whose size is not 1 is left as it is; NumPy's ``axis=``
    keeps NumPy's meaning and raises for it.
    """
    if dim is None and axis is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    numpy_spelling = axis is not None
    chosen = resolve_dim("squeeze", dim, axis)
    wanted = (chosen,) if isinstance(chosen, (int, np.integer)) else tuple(chosen)
    nd = builtins.max(x.ndim, 1)
    drop = {_dim_index(d, nd, "squeeze") for d in wanted}
    if x.ndim == 0:
        return x
    for d in sorted(drop):
        if x.shape[d] != 1 and numpy_spelling:
            raise ValueError(f"squeeze: axis {d} of shape {x.shape} has size {x.shape[d]}, "
                             "not 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in drop and n == 1)))


@keywords
def unsqueeze(x: Tensor, dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """Insert a size-1 dim at ``dim`` (``axis=`` is NumPy's name; -1 appends one)."""
    d = resolve_dim("unsqueeze", dim, axis)
    if d is None:
        raise TypeError("unsqueeze: missing dim (e.g. x.unsqueeze(0))")
    d = _dim_index(d, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` with basic and advanced indexing."""
    return GetItem(_index_arrays(index))(x)


def _join_dim(op: str, dim: int | None, axis: int | None) -> int:
    d = resolve_dim(op, dim, axis)
    return 0 if d is None else d


@keywords
def cat(tensors: Sequence[Tensor], dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """Concatenate along an existing ``dim`` (default 0; ``axis=`` is NumPy's name)."""
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    return Concat(_join_dim("cat", dim, axis))(*tensors)


@keywords
def stack(tensors: Sequence[Tensor], dim: int | None = None, *,
          axis: int | None = None) -> Tensor:
    """Join along a new ``dim`` (default 0; ``axis=`` is NumPy's name)."""
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    d = _join_dim("stack", dim, axis)
    shapes = {as_tensor(t).shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have one shape, got {sorted(shapes)}")
    return cat([unsqueeze(as_tensor(t), d) for t in tensors], d)


@keywords
def chunk(x: Tensor, chunks: int, dim: int | None = None, *,
          axis: int | None = None) -> tuple[Tensor, ...]:
    """Split into ``chunks`` pieces of size ceil(n / chunks) along ``dim`` (the last may be
    smaller, and there may be fewer pieces), as ``torch.chunk``."""
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
    d = _join_dim("chunk", dim, axis)
    n = x.shape[_dim_index(d, builtins.max(x.ndim, 1), "chunk")]
    return split(x, builtins.max(-(-n // int(chunks)), 1), d)


@keywords
def split(x: Tensor, split_size_or_sections: int | Sequence[int], dim: int | None = None, *,
          axis: int | None = None) -> tuple[Tensor, ...]:
    """Split into chunks of one size (int; the last may be smaller) or of the given sizes
    (list), along ``dim`` (default 0), as ``torch.split``. Unlike ``numpy.split``, an int is
    the chunk *size*, not the number of chunks."""
    d = _join_dim("split", dim, axis)
    n = x.shape[_dim_index(d, builtins.max(x.ndim, 1), "split")]
    if isinstance(split_size_or_sections, (int, np.integer)):
        k = int(split_size_or_sections)
        if k <= 0:
            raise ValueError(f"split: chunk size must be positive, got {k}")
        sizes = [k] * (n // k) + ([n % k] if n % k else [])
    else:
        sizes = list(split_size_or_sections)
    out = Split(sizes, d)(x)
    return out if isinstance(out, tuple) else (out,)


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant",
        value: float | None = None) -> Tensor:
    """Pad (or, with negative widths, crop) the last ``len(pad) // 2`` dims, as
    ``torch.nn.functional.pad``: ``pad=(left, right, top, bottom, ...)`` from the last dim.

    ``mode``: 'constant' (``value``, default 0), 'reflect' (mirror, not repeating the edge;
    each pad smaller than its dim), 'replicate' (repeat the edge) or 'circular' (wrap
    around; each pad at most its dim). The gradient of the last three adds each output's
    gradient into the input position it was copied from.

        >>> import minidl as md
        >>> pad(md.tensor([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect").numpy()
        array([[3., 2., 1., 2., 3., 2.]], dtype=float32)
    """
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: {tuple(pad)} must hold (before, after) pairs for at most "
                         f"{x.ndim} dims (input shape {x.shape})")
    if isinstance(mode, (int, float)) and not isinstance(mode, bool):
        raise TypeError(f"pad: the third argument is mode (torch's order), got {mode!r}; "
                        f"pass value={mode!r} by keyword")
    if mode not in _PAD_MODES:
        hint = _NUMPY_PAD_MODES.get(mode)
        hint = f"; NumPy's {mode!r} is mode={hint!r} here" if hint else ""
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}{hint}")
    if mode != "constant" and value not in (None, 0):
        raise ValueError(f"pad: mode={mode!r} takes no value (got value={value}); "
                         f"value is for mode='constant'")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    for n, (b, a) in zip(x.shape, widths):
        if n + b + a < 0:
            raise ValueError(f"pad: {tuple(pad)} crops more than the {n} elements of a dim "
                             f"of input shape {x.shape}")
    if mode == "constant":
        return Pad(widths, 0.0 if value is None else value)(x)
    first = x.ndim - len(pad) // 2
    index = []
    for axis in range(first, x.ndim):
        n, (b, a) = x.shape[axis], widths[axis]
        limit = n - 1 if mode == "reflect" else n
        if (b > 0 or a > 0) and (n == 0 or builtins.max(b, a) > limit):
            rule = "smaller than" if mode == "reflect" else "at most"
            raise ValueError(f"pad: mode={mode!r} needs each pad {rule} its dim, got pad "
                             f"{tuple(pad)} for input shape {x.shape}")
        shape = [1] * (x.ndim - first)
        shape[axis - first] = -1
        index.append(_pad_index(mode, n, b, a).reshape(shape))
    xp = get_array_module(x.data)
    # one gather through an open mesh of index vectors; its gradient is a scatter-add
    return getitem(x, (slice(None),) * first + tuple(xp.asarray(i) for i in index))
