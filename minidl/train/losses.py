"""Loss functions by name: get_loss."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..autograd import Tensor

__all__ = ["get_loss"]


def get_loss(spec: str | Callable[[Any, Any], Tensor]) -> Callable[[Any, Any], Tensor]:
    """A loss callable ``loss(output, target) -> scalar Tensor`` from a name or a callable.

    Names: 'cross_entropy' (alias 'ce', 'categorical_crossentropy'), 'nll', 'mse',
    'bce' (probabilities), 'bce_with_logits'.
    """
    if callable(spec):
        return spec
    from .. import functional as F  # noqa: PLC0415 - keeps the name table next to its use

    table = {
        "cross_entropy": F.cross_entropy, "ce": F.cross_entropy,
        "categorical_crossentropy": F.cross_entropy,
        "sparse_categorical_crossentropy": F.cross_entropy,
        "nll": F.nll_loss, "nll_loss": F.nll_loss,
        "mse": F.mse_loss, "mse_loss": F.mse_loss, "mean_squared_error": F.mse_loss,
        "bce": F.binary_cross_entropy, "binary_crossentropy": F.binary_cross_entropy,
        "bce_with_logits": F.binary_cross_entropy_with_logits,
    }
    if not isinstance(spec, str) or spec.lower() not in table:
        raise ValueError(f"unknown loss {spec!r}; expected a callable or one of "
                         f"{sorted(table)}")
    return table[spec.lower()]
