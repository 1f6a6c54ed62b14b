"""The lectures' labs beyond gradient flow, one experiment per module, run as ``minidl lab NAME``.

Each lab is a function ``NAME(quick=False, seed=0, cache_dir=None) -> FlowResult`` (a table,
notes and a figure, like the gradient-flow experiments): ``quick`` runs a small version in a
few seconds (the tests use it), ``cache_dir`` is where a lab keeps what repeats can reuse
(pretrained weights, say). Labs are imported when one runs, so listing them stays cheap.

    >>> from minidl.flow.labs import LABS
    >>> "normalization" in LABS
    True
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["LABS", "get_lab"]

#: name -> (module in this package, one line of help), in the order ``minidl lab`` lists them
LABS: dict[str, tuple[str, str]] = {
    "normalization": ("normalization", "a tanh net trained on inputs centred at 0, fine-tuned "
                      "on inputs shifted by 5 (the 'cloudy day'), with and without a "
                      "Normalization layer adapted to the new data"),
    "transfer": ("transfer", "LeNet-5 pretrained on digits 0-4: accuracy on digits 5-9 "
                 "(similar) and pixel-permuted 5-9 (different) against images per class, "
                 "from scratch, CNN codes, fine-tuning the top or everything"),
    "gan": ("gan", "a DCGAN on the bundled digits, its samples judged by a LeNet-5 after "
            "every epoch: the share classified with confidence > 0.9, the digits present, "
            "the losses over steps"),
}


def get_lab(name: str) -> Callable[..., Any]:
    """The experiment function of lab ``name`` (imports its module)."""
    if name not in LABS:
        raise ValueError(f"unknown lab {name!r}; the labs are {', '.join(LABS)}")
    module, _ = LABS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name.replace("-", "_"))
