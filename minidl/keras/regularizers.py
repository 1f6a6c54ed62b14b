"""Keras's weight regularizers: ``l1``, ``l2``, ``l1_l2`` (and the classes L1, L2, L1L2).

Keras's convention, not ½: ``l2(0.01)`` adds ``0.01 * sum(w**2)`` to the loss and ``l1(0.01)``
adds ``0.01 * sum(|w|)``. They are :mod:`minidl.optim.regularizers`' (which follow Keras); a
layer's penalties are summed by ``model.regularization_loss()`` and added to the loss by fit.
A custom regularizer is any function ``Tensor -> scalar Tensor``; the Keras layers call it
with the kernel in Keras's layout ((in, units) for Dense).

    >>> import minidl as md
    >>> round(l2(0.01)(md.tensor([[1.0, 2.0]])).item(), 6)       # 0.01 * (1 + 4)
    0.05
"""
from __future__ import annotations

from ..optim.regularizers import Regularizer, l1, l1_l2, l2

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get"]


def L1(l1: float = 0.01) -> Regularizer:  # noqa: N802, E741 - Keras's class name
    """Keras's ``L1(l1=0.01)``."""
    return Regularizer(l1=l1)


def L2(l2: float = 0.01) -> Regularizer:  # noqa: N802 - Keras's class name
    """Keras's ``L2(l2=0.01)``."""
    return Regularizer(l2=l2)


def L1L2(l1: float = 0.0, l2: float = 0.0) -> Regularizer:  # noqa: N802, E741
    """Keras's ``L1L2(l1=0.0, l2=0.0)`` (note: zero defaults, unlike ``l1_l2``)."""
    return Regularizer(l1=l1, l2=l2)


def get(identifier):  # noqa: ANN001, ANN201 - mirrors keras.regularizers.get
    """A regularizer from None, 'l1', 'l2', 'l1_l2' (default strengths) or a callable."""
    if identifier is None or callable(identifier):
        return identifier
    table = {"l1": l1, "l2": l2, "l1_l2": l1_l2}
    if isinstance(identifier, str) and identifier.lower() in table:
        return table[identifier.lower()]()
    raise ValueError(f"unknown regularizer {identifier!r}; expected 'l1', 'l2', 'l1_l2' or a "
                     f"callable")
