"""Optimisers (torch.optim's rules and defaults), LR schedulers, regularizers, constraints.

``optimizer.py`` the Optimizer base class (parameter groups, state dicts); the rules by
family in ``sgd.py``, ``adam.py`` (Adam, AdamW, Nadam), ``rmsprop.py``, ``adagrad.py``;
``lr_scheduler.py`` schedules; ``regularizers.py`` and ``constraints.py`` what layers take as
``weight_regularizer=`` and ``weight_constraint=``.

    >>> import minidl as md, minidl.nn as nn, minidl.optim as optim
    >>> net = nn.Linear(3, 1)
    >>> opt = optim.Adam(net.parameters(), lr=1e-2)
    >>> type(opt).__name__, opt.param_groups[0]["betas"]
    ('Adam', (0.9, 0.999))
"""
from . import constraints, lr_scheduler, regularizers
from .adagrad import Adagrad
from .adam import Adam, AdamW, NAdam, Nadam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "NAdam", "Nadam", "Optimizer", "RMSprop",
           "constraints", "lr_scheduler", "regularizers"]
