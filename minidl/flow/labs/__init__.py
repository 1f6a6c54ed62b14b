"""The lectures' labs beyond gradient flow, one experiment per module, run as ``minidl lab NAME``.

Each lab is a function ``NAME(quick=False, seed=0, cache_dir=None) -> FlowResult`` (a table,
notes and a figure, like the gradient-flow experiments): ``quick`` runs a small version in a
few seconds (the tests use it), ``cache_dir`` is where a lab keeps what repeats can reuse
(pretrained weights, say). A lab's module is imported when it runs.

    >>> from minidl.flow.labs import LABS
    >>> "normalization" in LABS
    True
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["LABS", "get_lab"]

#: lab name -> its module in this package (the help texts are the ``minidl lab`` command's)
LABS: dict[str, str] = {
    "normalization": "normalization",
    "regularization": "regularization",
    "mc-dropout": "mc_dropout",
    "optimizers": "optimizers",
    "augmentation": "augmentation",
    "transfer": "transfer",
    "gan": "gan",
}


def get_lab(name: str) -> Callable[..., Any]:
    """The experiment function of lab ``name`` (imports its module)."""
    if name not in LABS:
        raise ValueError(f"unknown lab {name!r}; the labs are {', '.join(LABS)}")
    module = importlib.import_module(f"{__name__}.{LABS[name]}")
    return getattr(module, name.replace("-", "_"))
