"""Optimisers (torch.optim's rules and defaults), LR schedulers, regularizers, constraints.

``optimizer.py`` the Optimizer base class (parameter groups, state dicts); the rules by
family in ``sgd.py``, ``adam.py`` (Adam, AdamW, Nadam, RAdam, Adamax), ``rmsprop.py``,
``adagrad.py``, ``adadelta.py``;
``lr_scheduler/`` schedules; ``regularizers.py`` and ``constraints.py`` what layers take as
``weight_regularizer=`` and ``weight_constraint=``; :func:`get_optimizer` builds one by name
(the CLI's ``--optimizer`` and Keras' ``compile(optimizer="adam")``).

    >>> import minidl as md, minidl.nn as nn, minidl.optim as optim
    >>> net = nn.Linear(3, 1)
    >>> opt = optim.Adam(net.parameters(), lr=1e-2)
    >>> type(opt).__name__, opt.param_groups[0]["betas"]
    ('Adam', (0.9, 0.999))
"""
from typing import Any

from . import constraints, lr_scheduler, regularizers
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, Adamax, AdamW, NAdam, Nadam, RAdam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["OPTIMIZERS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam",
           "Nadam", "Optimizer", "RAdam", "RMSprop", "constraints", "get_optimizer",
           "lr_scheduler", "regularizers"]

#: The optimisers by their lower-case names (Keras' and the CLI's spellings).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "nadam": Nadam, "radam": RAdam,
    "adamax": Adamax, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta}


def get_optimizer(name: str, params: Any, **settings: Any) -> Optimizer:
    """The optimiser called ``name`` (any case) over ``params``, with ``settings`` such as
    ``lr=`` and ``weight_decay=`` passed to its constructor.

        >>> import minidl.nn as nn
        >>> opt = get_optimizer("SGD", nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
        >>> type(opt).__name__, opt.param_groups[0]["momentum"]
        ('SGD', 0.9)
    """
    cls = OPTIMIZERS.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return cls(params, **settings)
