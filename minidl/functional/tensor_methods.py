"""Attach the operators (``+``, ``@``, ``x[i]``, ...) and methods (``.sum()``, ...) to Tensor.

The methods are torch's (``x.size(0)``, ``x.max(1)`` -> ``(values, indices)``, ``x.var()``
unbiased, ``x.transpose(0, 1)``, ``x.float()``, ...), with NumPy's spellings (``axis=``,
``keepdims=``, ``ddof=``, ``x.size`` as the element count, ``x.astype``) kept at NumPy's
meaning beside them.

    >>> import minidl as md
    >>> x = md.tensor([[1., 5., 2.], [7., 0., 3.]])
    >>> x.size(), x.size(1), x.numel(), x.dim()
    (Size([2, 3]), 3, 6, 2)
    >>> values, indices = x.max(1)
    >>> values.tolist(), indices.tolist()
    ([5.0, 7.0], [1, 0])
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .. import factories
from ..autograd import Tensor, tensor
from ..backend import device_of
from .activation import log_softmax, logsumexp, relu, sigmoid, softmax, tanh
from .elementwise import (
    abs,
    add,
    astype,
    clip,
    clone,
    contiguous,
    div,
    exp,
    log,
    masked_fill,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    to_device,
)
from .inplace import install_inplace_methods
from .linalg import matmul, mm, norm
from .reduction import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    broadcast_to,
    max,
    mean,
    min,
    prod,
    repeat,
    std,
    sum,
    var,
)
from .shape import (
    chunk,
    flatten,
    getitem,
    permute,
    reshape,
    split,
    squeeze,
    transpose,
    unsqueeze,
)
from .sorting import argsort, sort, take_along_dim, topk


def _is_dtype_name(name: str) -> bool:
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


class Size(tuple):
    """A tensor's shape as a tuple of ints, what ``x.size()`` returns (``torch.Size``)."""

    def numel(self) -> int:
        """The number of elements of a tensor of this shape."""
        return int(np.prod(self, dtype=np.int64))

    def __repr__(self) -> str:
        return f"Size({list(self)})"


class _SizeAttribute(int):
    """``x.size``: NumPy's element count (an int), and callable as torch's ``x.size()``
    (the shape as a :class:`Size`) or ``x.size(d)`` (one dim, negative counts from the end)."""

    def __call__(self, dim: int | None = None) -> Any:
        shape = self.shape
        if dim is None:
            return Size(shape)
        n = builtins.max(len(shape), 1)
        if isinstance(dim, builtins.bool) or not isinstance(dim, (builtins.int, np.integer)) \
                or not -n <= dim < n:
            raise IndexError(f"size: dim {dim!r} is out of range for a tensor of shape "
                             f"{shape} (expected an int in [{-n}, {n - 1}])")
        return shape[dim] if shape else 1


def _size(x: Tensor) -> _SizeAttribute:
    out = _SizeAttribute(x.data.size)
    out.shape = tuple(x.data.shape)
    return out


def _scalar(kind: type) -> Any:
    def convert(x: Tensor) -> Any:
        if x.data.size != 1:
            raise ValueError(f"{kind.__name__}(tensor): only one-element tensors can be "
                             f"converted to Python scalars, got shape {x.shape}; reduce it "
                             "(.sum(), .mean()) or index one element first")
        return kind(x.data.reshape(()).item())
    convert.__name__ = f"__{kind.__name__}__"
    return convert


def _array(x: Tensor, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``np.asarray(x)``: the CPU array itself (torch's ``x.numpy()`` semantics); a CUDA
    tensor must be moved first, and one that requires grad detached, as in torch."""
    if x.requires_grad:
        raise TypeError(f"can't convert a tensor that requires grad (shape {x.shape}) to NumPy; "
                        "use x.detach().numpy()")
    if device_of(x.data) != "cpu":
        raise TypeError(f"can't convert a 'cuda' tensor of shape {x.shape} to NumPy; use "
                        "x.cpu() or x.numpy() (which copies to the host)")
    a = x.data if dtype is None else x.data.astype(dtype, copy=False)
    return a.copy() if copy else a


def _index(x: Tensor) -> int:
    """``operator.index(x)`` (``range(t)``, ``items[t]``): one-element integer tensors only."""
    if x.data.dtype.kind not in "iu" or x.data.size != 1:
        raise TypeError(f"only integer tensors of a single element can be converted to an "
                        f"index, got dtype {x.dtype} and shape {x.shape}")
    return builtins.int(x.data.reshape(()).item())


def _compare(op: str) -> Any:
    def compare(a: Tensor, b: Any) -> Tensor:
        other = b.data if isinstance(b, Tensor) else b
        return Tensor(getattr(a.data, op)(other))
    compare.__name__ = op
    return compare


def _shape_args(shape: tuple) -> Any:
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3)."""
    return shape[0] if len(shape) == 1 and not isinstance(shape[0], (builtins.int, np.integer)) \
        else shape


def _extreme_method(fn: Any, pick: Any) -> Any:
    def method(x: Tensor, dim: Any = None, keepdim: bool = False, **kwargs: Any) -> Any:
        if isinstance(dim, Tensor):  # torch's max(x, other): elementwise
            return pick(x, dim)
        return fn(x, dim, keepdim, **kwargs)
    method.__name__ = fn.__name__
    method.__doc__ = f"{fn.__doc__}\n\n    With a tensor as the second argument: elementwise."
    return method


# torch.max / torch.min: a reduction, or with a tensor second argument the elementwise op
# (F.max and F.min are these; the reductions cannot import the elementwise ops themselves,
# which import the reductions)
torch_max = _extreme_method(max, maximum)
torch_min = _extreme_method(min, minimum)


def _new_like(make: Any, x: Tensor, size: tuple, kwargs: dict) -> Tensor:
    """torch's ``x.new_zeros(2, 3)`` family: x's dtype and device unless the keywords say."""
    return make(*size, **{"dtype": x.dtype, "device": x.device, **kwargs})


def _t(x: Tensor) -> Tensor:
    """torch's ``x.t()``: the transpose of a matrix; 0-D and 1-D tensors come back as they are."""
    if x.ndim > 2:
        raise ValueError(f"t: expects a tensor with at most 2 dims, got shape {x.shape}; use "
                         "x.transpose(dim0, dim1) or x.permute(...)")
    return x if x.ndim < 2 else transpose(x, 0, 1)


def _to(x: Tensor, *args: Any, dtype: Any = None, device: str | None = None,
        copy: bool = False, non_blocking: bool = False) -> Tensor:
    """torch's ``x.to(...)``: ``x.to('cuda')``, ``x.to(md.float64)``, ``x.to('cpu', md.float16)``,
    ``x.to(other_tensor)`` (its device and dtype) or keywords; differentiable."""
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, str) and not _is_dtype_name(a):
            device = a  # the backend names the valid devices if it is none of them
        elif a is not None:
            try:
                dtype = np.dtype(a)
            except TypeError:
                raise TypeError(f"to: expected a device ('cpu', 'cuda'), a dtype (md.float32, "
                                f"...) or a tensor, got {a!r}") from None
    out = x if device is None else to_device(x, device)
    out = out if dtype is None else astype(out, dtype)
    return clone(out) if copy and out is x else out


def install_tensor_methods() -> None:
    """Attach the operators and methods to :class:`~minidl.autograd.Tensor`.

    ``import minidl`` calls this once. The engine in ``minidl.autograd`` sits below the ops
    and works without them; the ops are built on it, so they are attached from up here.
    Calling it again changes nothing.
    """
    T = Tensor
    install_inplace_methods()  # x[i] = v, += -= *= /= @= and the _ methods
    # the ops themselves, not lambdas around them: one Python call fewer per operator
    T.__add__ = add
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = sub
    T.__rsub__ = lambda a, b: sub(b, a)
    T.__mul__ = mul
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = div
    T.__rtruediv__ = lambda a, b: div(b, a)
    T.__pow__ = lambda a, b: pow(a, b)
    T.__rpow__ = lambda a, b: pow(b, a)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__rmatmul__ = lambda a, b: matmul(b, a)
    T.__neg__ = neg
    T.__abs__ = abs
    T.__getitem__ = getitem
    for op in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
        setattr(T, op, _compare(op))
    T.__hash__ = object.__hash__
    for name, op in (("eq", "__eq__"), ("ne", "__ne__"), ("lt", "__lt__"), ("le", "__le__"),
                     ("gt", "__gt__"), ("ge", "__ge__")):
        setattr(T, name, getattr(T, op))
    T.add, T.sub, T.mul, T.div, T.pow, T.neg = add, sub, mul, div, pow, neg
    T.__array__ = _array
    T.__float__ = _scalar(builtins.float)
    T.__int__ = _scalar(builtins.int)
    T.__index__ = _index
    # sizes: torch's x.size() / x.size(d) / numel() / dim(), NumPy's x.size (an int)
    T.size = property(_size)
    T.numel = lambda x: builtins.int(x.data.size)
    T.nelement = T.numel
    T.dim = lambda x: x.data.ndim
    # reductions
    T.sum = sum
    T.mean = mean
    T.var = var
    T.std = std
    T.prod = prod
    T.max = torch_max
    T.min = torch_min
    T.amax = amax
    T.amin = amin
    T.argmax = argmax
    T.argmin = argmin
    T.any = any
    T.all = all
    T.logsumexp = logsumexp
    T.norm = norm
    # elementwise and activations
    T.exp = exp
    T.log = log
    T.sqrt = sqrt
    T.abs = abs
    T.clip = clip
    T.clamp = clip
    T.maximum = maximum
    T.minimum = minimum
    T.relu = relu
    T.sigmoid = sigmoid
    T.tanh = tanh
    T.softmax = softmax
    T.log_softmax = log_softmax
    # shapes
    T.reshape = lambda x, *shape: reshape(x, _shape_args(shape))
    T.view = T.reshape
    T.transpose = transpose
    T.permute = permute
    T.t = _t
    T.T = property(lambda x: transpose(x))
    T.flatten = flatten
    T.squeeze = squeeze
    T.unsqueeze = unsqueeze
    T.broadcast_to = broadcast_to
    T.expand = lambda x, *shape: broadcast_to(x, tuple(
        n if s == -1 else s for n, s in zip((1,) * (len(_shape_args(shape)) - x.ndim) + x.shape,
                                             _shape_args(shape))))
    T.expand_as = lambda x, other: broadcast_to(x, other.shape)
    T.split = split
    T.chunk = chunk
    T.masked_fill = masked_fill
    T.repeat = repeat
    T.sort = sort
    T.argsort = argsort
    T.topk = topk
    T.take_along_dim = take_along_dim
    T.clone = clone
    T.contiguous = contiguous
    T.is_contiguous = lambda x: builtins.bool(x.data.flags.c_contiguous)
    # products
    T.matmul = matmul
    T.mm = mm
    # dtypes and devices
    T.astype = astype
    T.new_zeros = lambda x, *size, **kw: _new_like(factories.zeros, x, size, kw)
    T.new_ones = lambda x, *size, **kw: _new_like(factories.ones, x, size, kw)
    T.new_empty = lambda x, *size, **kw: _new_like(factories.empty, x, size, kw)
    T.new_full = lambda x, size, fill_value, **kw: factories.full(
        size, fill_value, **{"dtype": x.dtype, "device": x.device, **kw})
    T.new_tensor = lambda x, data, **kw: tensor(data, **{"dtype": x.dtype,
                                                          "device": x.device, **kw})
    T.type_as = lambda x, other: astype(x, other.dtype)
    T.to = _to
    T.float = lambda x: astype(x, np.float32)
    T.double = lambda x: astype(x, np.float64)
    T.half = lambda x: astype(x, np.float16)
    T.long = lambda x: astype(x, np.int64)
    T.int = lambda x: astype(x, np.int32)
    T.bool = lambda x: astype(x, np.bool_)
    T.is_floating_point = lambda x: x.data.dtype.kind == "f"
    T.is_cuda = property(lambda x: device_of(x.data) == "cuda")
