"""The lecture model zoo, a registry, and transfer-learning helpers.

    >>> from minidl.models import get_model, list_models, replace_head, freeze
    >>> net = get_model("lenet5")
    >>> net.num_parameters()
    61706
    >>> head = replace_head(net, 5)          # a fresh Linear(84, 5)
    >>> frozen = freeze(net, depth=-1)       # everything but the head
    >>> net.num_parameters(trainable_only=True)
    425

One file per family (lenet, alexnet, vgg, googlenet, resnet, densenet, gan, wide_deep).
The ImageNet models use torchvision's state-dict names, so torchvision weights load with
:func:`load_torch_state_dict`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import functional as F
from ..autograd import Tensor, no_grad, tensor
from ..io import load_torch_state_dict, read_state_dict
from ..nn import Linear, Module, init
from .alexnet import AlexNet, alexnet
from .densenet import DenseNet, densenet121, densenet169, densenet201, densenet_cifar
from .gan import GANTrainer, dcgan_discriminator, dcgan_generator
from .googlenet import GoogLeNet, Inception, InceptionNaive, googlenet, googlenet_loss
from .lenet import LeNet5, lenet5
from .resnet import (
    CifarResNet,
    ResNet,
    cifar_resnet,
    plain18,
    plain34,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from .vgg import VGG, vgg, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from .wide_deep import wide_and_deep

__all__ = [
    "AlexNet", "CifarResNet", "DenseNet", "GANTrainer", "GoogLeNet", "Inception",
    "InceptionNaive", "LeNet5", "ResNet", "VGG", "alexnet", "cifar_resnet", "dcgan_discriminator",
    "dcgan_generator", "densenet121", "densenet169", "densenet201", "densenet_cifar",
    "extract_features", "freeze", "get_model", "get_submodule", "googlenet", "googlenet_loss",
    "lenet5", "list_models", "load_torch_state_dict", "param_groups", "plain18", "plain34",
    "read_state_dict", "register_model", "replace_head", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "set_submodule", "skip_init", "unfreeze", "vgg", "vgg11",
    "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "wide_and_deep",
]

_REGISTRY: dict[str, Callable[..., Module]] = {}


def register_model(name: str, builder: Callable[..., Module]) -> None:
    """Add ``builder`` to the registry under ``name`` (lower case)."""
    _REGISTRY[name.lower()] = builder


for _fn in (lenet5, alexnet, vgg, vgg11, vgg13, vgg16, vgg19, vgg11_bn, vgg13_bn, vgg16_bn,
            vgg19_bn, googlenet, resnet18, resnet34, resnet50, resnet101, resnet152, plain18,
            plain34, cifar_resnet, densenet121, densenet169, densenet201, densenet_cifar,
            dcgan_generator, dcgan_discriminator, wide_and_deep):
    register_model(_fn.__name__, _fn)
for _depth in (20, 32, 44, 56, 110):
    register_model(f"cifar_resnet{_depth}",
                   lambda _d=_depth, **kw: cifar_resnet(_d, **kw))


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs: Any) -> Module:
    """Build a model by name: ``get_model('resnet18', num_classes=10)``.

    Names are those of :func:`list_models`; case, '-' and '_' are ignored ('ResNet-18').
    """
    squash = {k.replace("_", ""): k for k in _REGISTRY}
    key = squash.get(name.lower().replace("-", "").replace("_", ""))
    if key is None:
        raise ValueError(f"get_model: unknown model {name!r}; available: "
                         f"{', '.join(list_models())}")
    return _REGISTRY[key](**kwargs)


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build models without drawing random weights (they stay zero): for counting
    parameters and MACs of big nets quickly (:func:`minidl.nn.init.skip_init`; per thread).

        >>> with skip_init():
        ...     n = get_model("vgg16").num_parameters()
        >>> n
        138357544
    """
    with init.skip_init():
        yield


# ---- transfer learning -------------------------------------------------------------------

def get_submodule(model: Module, path: str) -> Module:
    """The module at dotted ``path`` ('' is the model): ``get_submodule(vgg, 'classifier.6')``."""
    m = model
    for part in filter(None, path.split(".")):
        children = dict(m.named_children())
        if part not in children:
            raise ValueError(f"get_submodule: {type(m).__name__} has no child {part!r} "
                             f"(path {path!r}; children: {list(children)})")
        m = children[part]
    return m


def set_submodule(model: Module, path: str, new: Module) -> None:
    """Replace the module at dotted ``path`` by ``new``."""
    parent_path, _, name = path.rpartition(".")
    parent = get_submodule(model, parent_path)
    if name not in dict(parent.named_children()):
        raise ValueError(f"set_submodule: {type(parent).__name__} has no child {name!r}")
    parent.add_module(name, new)


def _head_path(model: Module) -> str:
    path = getattr(model, "head_name", None)
    if path:
        return path
    last = None
    for name, m in model.named_modules():
        if isinstance(m, Linear):
            last = name
    if last is None:
        raise ValueError(f"replace_head: {type(model).__name__} has no Linear layer and no "
                         f"head_name attribute")
    return last


def replace_head(model: Module, num_classes: int, aux: bool = True) -> Linear:
    """Replace the final classifier by a fresh ``Linear(in_features, num_classes)``.

    The head is ``model.head_name`` ('fc', 'classifier', 'classifier.6', ...) or the last
    Linear layer. GoogLeNet's auxiliary heads are replaced too unless ``aux=False``.
    Returns the new head (on the old head's device and dtype).
    """
    path = _head_path(model)
    old = get_submodule(model, path)
    in_features = getattr(old, "in_features", None)
    if in_features is None:
        raise ValueError(f"replace_head: {path} ({type(old).__name__}) has no in_features")
    ref = next(iter(old.parameters()), None)
    new = Linear(in_features, num_classes,
                 dtype=None if ref is None else ref.dtype,
                 device=None if ref is None else ref.device)
    set_submodule(model, path, new)
    if aux:
        for aux_name in ("aux1", "aux2"):
            a = getattr(model, aux_name, None) if aux_name in dict(model.named_children()) \
                else None
            if a is not None and hasattr(a, "fc2"):
                a.fc2 = Linear(a.fc2.in_features, num_classes, dtype=a.fc2.weight.dtype,
                               device=a.fc2.weight.device)
    return new


def _layers_with_params(model: Module) -> list[tuple[str, Module]]:
    """Modules that own parameters directly, in definition order."""
    return [(n, m) for n, m in model.named_modules()
            if any(p is not None for p in m._parameters.values())]


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p.rstrip(".") + ".") for p in prefixes)


def freeze(model: Module, prefixes: str | Iterable[str] | None = None,
           depth: int | None = None) -> list[str]:
    """Freeze parameters by name prefix or by depth; returns the names frozen.

    ``prefixes='features'`` (or a list) freezes every parameter whose dotted name starts
    with one of them; ``depth=k`` freezes the first k layers that have parameters, and
    ``depth=-k`` all but the last k (``depth=-1``: everything except the head).
    With neither, the whole model is frozen.
    """
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if prefixes is not None and depth is not None:
        raise ValueError("freeze: give prefixes or depth, not both")
    if depth is not None:
        layers = _layers_with_params(model)
        chosen = layers[:depth]
        prefixes = [n for n, _ in chosen]
        names = [f"{n}.{k}" if n else k for n, m in chosen
                 for k, p in m._parameters.items() if p is not None]
    else:
        names = [n for n, _ in model.named_parameters()
                 if prefixes is None or _matches(n, prefixes)]
        if prefixes is not None and not names:
            raise ValueError(f"freeze: no parameter name starts with {list(prefixes)}")
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad = False
        params[n].grad = None
    return names


def unfreeze(model: Module, prefixes: str | Iterable[str] | None = None) -> list[str]:
    """Make parameters trainable again (all, or those under ``prefixes``); returns names."""
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    names = []
    for n, p in model.named_parameters():
        if prefixes is None or _matches(n, prefixes):
            p.requires_grad = True
            names.append(n)
    return names


def param_groups(model: Module, lr: float, body_lr: float | None = None,
                 head: str | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups for fine-tuning: the head at ``lr``, the pretrained body at
    ``body_lr`` (default ``lr / 10``). Frozen parameters are left out.

        >>> from minidl.optim import SGD
        >>> opt = SGD(param_groups(get_model('lenet5'), lr=0.1), lr=0.1, momentum=0.9)
    """
    path = head or _head_path(model)
    head_params, body_params = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (head_params if _matches(n, [path]) else body_params).append(p)
    groups = []
    if body_params:
        groups.append({"params": body_params, "lr": lr / 10 if body_lr is None else body_lr})
    if head_params:
        groups.append({"params": head_params, "lr": lr})
    return groups


def extract_features(model: Module, x: Any, batch_size: int | None = None) -> Tensor:
    """The CNN codes: what the head receives, in eval mode without a graph.

    Works for every model of the zoo (and any model with a ``head_name`` or a final
    Linear): a forward pre-hook on the head captures its input. x: (N, ...) -> (N, D).
    """
    if not isinstance(x, Tensor):
        x = tensor(x)
    head = get_submodule(model, _head_path(model))
    captured: list[Tensor] = []
    handle = head.register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
    was = model.training
    model.eval()
    try:
        with no_grad():
            n = x.shape[0]
            step = batch_size or n
            for i in range(0, n, step):
                model(x[i:i + step])
    finally:
        handle.remove()
        model.train(was)
    return captured[0] if len(captured) == 1 else F.cat(captured, axis=0)
