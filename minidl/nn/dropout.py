"""The dropout layer, and Monte Carlo dropout prediction with it."""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor, no_grad, tensor
from ..backend import get_array_module
from ..functional.validation import check_probability
from .module import Module

__all__ = ["Dropout", "mc_predict"]


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; identity in eval.

    ``inplace=True`` (torch's option) is accepted and computed out of place: the same values.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, name: str | None = None) -> None:
        super().__init__()
        self.p, self.name = check_probability(p, "p", "Dropout"), name
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def mc_predict(model: Module, x: Any, n: int = 30) -> tuple[Any, Any]:
    """Monte Carlo dropout (Gal & Ghahramani 2016): ``n`` stochastic forward passes.

    Dropout layers are active, everything else (BatchNorm) is in eval mode. Returns
    ``(mean, std)`` over the passes, as Tensors shaped like one output (lists of them for
    a model with several outputs). The model's modes are restored afterwards.
    """
    if n < 1:
        raise ValueError(f"mc_predict: n must be >= 1, got {n}")
    if not isinstance(x, (Tensor, list, tuple)):
        x = tensor(x, device=model.device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in model.modules():
        if isinstance(m, Dropout):
            object.__setattr__(m, "training", True)
    try:
        with no_grad():
            runs = [model(*x) if isinstance(x, (list, tuple)) else model(x) for _ in range(n)]
    finally:
        for m, flag in modes:
            object.__setattr__(m, "training", flag)
    multi = isinstance(runs[0], (list, tuple))
    per_output = list(zip(*runs)) if multi else [runs]
    means, stds = [], []
    for outs in per_output:
        xp = get_array_module(outs[0].data)
        stack = xp.stack([o.data for o in outs])
        means.append(Tensor(stack.mean(axis=0)))
        stds.append(Tensor(stack.std(axis=0)))
    return (means, stds) if multi else (means[0], stds[0])
