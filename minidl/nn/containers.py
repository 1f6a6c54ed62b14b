"""Containers of modules: ``Sequential``, ``ModuleList`` and ``ModuleDict``.

Children registered through a container are ordinary submodules: their parameters appear in
``parameters()`` and ``state_dict()`` under the container's keys (``0.weight``, ``2.bias``).

    >>> import minidl.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> len(net), type(net[1]).__name__, [n for n, _ in net[2:].named_parameters()]
    (3, 'ReLU', ['2.weight', '2.bias'])
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


def _check_module(container: str, m: Any) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{container}: expected Module instances, got {type(m).__name__}")
    return m


class Sequential(Module):
    """Modules applied one after another: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 2))``.

    Children are named "0", "1", ... (or by key when given an OrderedDict), so parameters
    are ``0.weight``, ``2.bias``, ... as in torch. Indexing and slicing give the layers.
    ``minidl.keras.Sequential`` adds Keras' ``compile``/``fit``/``evaluate``/``predict``.
    """

    def __init__(self, *layers: Module | Mapping[str, Module]) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], Mapping):
            for name, m in layers[0].items():
                self.add_module(name, _check_module("Sequential", m))
        else:
            if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
                layers = tuple(layers[0])
            for i, m in enumerate(layers):
                self.add_module(str(i), _check_module("Sequential", m))

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def append(self, module: Module) -> Sequential:
        """Add a layer at the end."""
        self.add_module(str(len(self._modules)), _check_module("Sequential", module))
        return self

    add = append  # Keras spelling

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice | str) -> Any:
        if isinstance(idx, str):
            return self._modules[idx]
        mods = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(mods[idx]))
        return mods[idx][1]


class ModuleList(Module):
    """A list of modules whose parameters are registered (a plain list would hide them)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), _check_module("ModuleList", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules)[idx]
        self._modules[key] = _check_module("ModuleList", module)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleList is a container; iterate over it in your forward()")


class ModuleDict(Module):
    """A dict of modules whose parameters are registered, in insertion order."""

    def __init__(self, modules: Mapping[str, Module] | None = None) -> None:
        super().__init__()
        for k, m in (modules or {}).items():
            self[k] = m

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not re.fullmatch(r"[^.]+", key):
            raise ValueError(f"ModuleDict: key {key!r} may not be empty or contain '.'")
        self.add_module(key, _check_module("ModuleDict", module))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleDict is a container; index it in your forward()")
