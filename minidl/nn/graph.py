"""Graph nodes that make networks non-sequential: residual sums and concatenations."""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module

__all__ = ["Residual", "Concat", "Add"]


def _flat(xs: tuple[Any, ...]) -> list[Any]:
    """Accept both ``f(a, b)`` and ``f([a, b])``."""
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        return list(xs[0])
    return list(xs)


class Residual(Module):
    """``block(x) + shortcut(x)``; the shortcut is the identity when None (ResNet's skip).

    x: any shape the block accepts; block(x) and shortcut(x) must have one shape.
    """

    def __init__(self, block: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if y.shape != s.shape:
            raise ValueError(f"Residual: block output {y.shape} and shortcut output {s.shape} "
                             "differ; give a shortcut (e.g. a 1x1 Conv2d with stride) that "
                             "matches them")
        return y + s


class Concat(Module):
    """Concatenate along ``axis`` (``dim=`` too; default 1, the channel axis).

    With branches (GoogLeNet's inception module, DenseNet): ``Concat(b1, b2, b3)(x)`` is
    ``cat([b1(x), b2(x), b3(x)], axis)``. Without branches it is a merge layer that joins
    its inputs: ``Concat()(a, b)`` or ``Concat()([a, b])`` (Keras' ``Concatenate``).
    """

    def __init__(self, *branches: Module, axis: int = 1, dim: int | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        if dim is not None:  # torch's spelling (torch.cat(..., dim=)) means the same axis
            axis = dim
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        for i, b in enumerate(branches):
            if not isinstance(b, Module):
                raise TypeError(f"Concat: branch {i} is a {type(b).__name__}, not a Module")
            self.add_module(str(i), b)
        self.axis, self.name = axis, name

    def forward(self, *xs: Any) -> Tensor:
        if self._modules:
            if len(xs) != 1:
                raise ValueError(f"Concat with {len(self._modules)} branches takes one input, "
                                 f"got {len(xs)}")
            outs = [b(xs[0]) for b in self._modules.values()]
        else:
            outs = _flat(xs)
            if not outs:
                raise ValueError("Concat: nothing to concatenate")
        try:
            return F.cat(outs, axis=self.axis)
        except ValueError:
            raise ValueError(f"Concat(axis={self.axis}): cannot join shapes "
                             f"{[tuple(o.shape) for o in outs]}") from None

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Add(Module):
    """Merge layer: the elementwise sum of its inputs (Keras' ``Add``): ``Add()(a, b)``."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name

    def forward(self, *xs: Any) -> Tensor:
        items = _flat(xs)
        if not items:
            raise ValueError("Add: nothing to add")
        shapes = {tuple(t.shape) for t in items}
        if len(shapes) > 1:
            raise ValueError(f"Add: inputs have different shapes {sorted(shapes)}")
        out = items[0]
        for t in items[1:]:
            out = out + t
        return out
