"""What the experiments share: the MLPs, their initialisation, the data, SGD training."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor, tensor
from ..backend import get_default_device
from ..data import mnist_subset, standardize_mnist
from ..optim import SGD
from ..train import NonFiniteLossError, Trainer

__all__ = ["ACTIVATIONS", "INITS", "init_weights", "make_mlp", "make_resnet_mlp",
           "zero_init_residual", "mnist_inputs", "sgd_train", "on_device",
           "f64"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("naive", "glorot", "he")


def init_weights(model: Any, init: str) -> Any:
    """Re-initialise every Linear/Conv weight of ``model`` in place; biases become 0.

    ``init``: 'naive' N(0, 0.01²) (the "small random numbers" W = 0.01 * randn of the
    lectures), 'glorot' (Xavier normal, std sqrt(2 / (fan_in + fan_out))) or 'he'
    (Kaiming normal, std sqrt(2 / fan_in)). BatchNorm keeps scale 1 and shift 0.
    """
    fill = {"naive": lambda w: nn.init.normal_(w, 0.0, 0.01),
            "glorot": nn.init.xavier_normal_,
            "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")}
    if init not in fill:
        raise ValueError(f"init_weights: init must be one of {sorted(fill)}, got {init!r}")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fill[init](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def make_mlp(depth: int, width: int = 32, activation: str = "sigmoid", init: str = "naive",
             batchnorm: bool = False, residual: bool = False, in_features: int = 784,
             classes: int = 10) -> Any:
    """An MLP with ``depth`` Linear layers: (N, in_features) -> (N, classes) logits.

    Plain: ``[Linear -> (BatchNorm1d) -> act] x (depth-1) -> Linear``.
    Residual (``residual=True``, even ``depth``): a Linear stem, ``(depth-2)/2`` blocks
    ``x + Linear(act(Linear(x)))`` (``nn.Residual``; with ``batchnorm`` each Linear is
    followed by a BatchNorm1d), then the output Linear. The identity path from the stem to
    the head carries no activation (as in pre-activation ResNets and transformer MLPs), so a
    squashing activation cannot shrink it; both forms have ``depth`` weight layers.
    """
    if depth < 2:
        raise ValueError(f"make_mlp: depth must be at least 2, got {depth}")
    if residual and depth % 2:
        raise ValueError(f"make_mlp: a residual MLP has 2 + 2 * blocks layers; depth {depth} "
                         "is odd")
    if activation not in ACTIVATIONS:
        raise ValueError(f"make_mlp: activation must be one of {ACTIVATIONS}, got {activation!r}")
    act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[activation]

    def linear(cin: int) -> list:
        if batchnorm:
            return [nn.Linear(cin, width, bias=False), nn.BatchNorm1d(width)]
        return [nn.Linear(cin, width)]

    if residual:
        layers = linear(in_features)
        for _ in range((depth - 2) // 2):
            layers.append(nn.Residual(nn.Sequential(*linear(width), act(), *linear(width))))
    else:
        layers = linear(in_features) + [act()]
        for _ in range(depth - 2):
            layers += linear(width) + [act()]
    layers.append(nn.Linear(width, classes))
    return init_weights(nn.Sequential(*layers), init)


def make_resnet_mlp(depth: int, width: int = 32, plain: bool = False, in_features: int = 784,
                    classes: int = 10) -> Any:
    """The MLP twin of ``cifar_resnet(depth)``: the same block structure with Linear layers.

    ``Sequential(stem, block_1, ..., block_n, head)`` with stem ``Linear-BN-ReLU``, ``n =
    (depth - 2) / 2`` blocks ``relu(x + BN(W2 relu(BN(W1 x))))`` (plain: without ``x +``)
    and a Linear head; He initialisation. (N, in_features) -> (N, classes).
    """
    if depth < 4 or depth % 2:
        raise ValueError(f"make_resnet_mlp: depth must be even and >= 4 (2 + 2 * blocks), "
                         f"got {depth}")

    def body() -> Any:
        return nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width),
                             nn.ReLU(), nn.Linear(width, width, bias=False),
                             nn.BatchNorm1d(width))

    stem = nn.Sequential(nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width),
                         nn.ReLU())
    blocks = [nn.Sequential(body() if plain else nn.Residual(body()), nn.ReLU())
              for _ in range((depth - 2) // 2)]
    return init_weights(nn.Sequential(stem, *blocks, nn.Linear(width, classes)), "he")


def zero_init_residual(model: Any) -> Any:
    """Set the scale of the last BatchNorm inside every ``nn.Residual`` block to 0, so each
    block starts as the identity (Goyal et al. 2017, "Accurate, large minibatch SGD")."""
    for m in model.modules():
        if isinstance(m, nn.Residual):
            norms = [b for b in m.block.modules()
                     if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d))]
            if norms:
                nn.init.zeros_(norms[-1].weight)
    return model


def f64(a: Any, requires_grad: bool = False) -> Tensor:
    """``a`` as a float64 Tensor: the single-neuron and parallel-path nets are checked exactly."""
    return tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def on_device(a: np.ndarray) -> Tensor:
    """A batch on minidl's default device (``MINIDL_DEVICE=cuda`` runs the lab on a GPU;
    the models are built there too, since layers are created on the default device)."""
    return tensor(a, device=get_default_device())


_DATA: dict[tuple, tuple[Any, Any]] = {}


def mnist_inputs(split: str = "train", flat: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST subset as float32, normalised with MNIST's mean and std.

    ``flat``: (N, 784), else (N, 1, 28, 28); labels int64 (N,). Cached after the first call.
    """
    key = (split, flat)
    if key not in _DATA:
        x, y = mnist_subset(split)
        x = standardize_mnist(x)
        _DATA[key] = (x.reshape(len(x), -1) if flat else x, y)
    return _DATA[key]


def sgd_train(model: Any, x: np.ndarray, y: np.ndarray, steps: int, lr: float = 0.05,
              batch: int = 64, seed: int = 0) -> list[float]:
    """Exactly ``steps`` steps of plain SGD (``p -= lr * grad``) with cross-entropy.

    x (N, ...) and y (N,) are host arrays; every step draws ``batch`` rows with replacement
    (``np.random.default_rng(seed).integers``), so the count of steps, not of epochs, is
    what an experiment fixes. The steps run as one epoch of :class:`minidl.train.Trainer`
    with ``minidl.optim.SGD``. Returns the loss of every step; when a loss is not finite the
    Trainer stops before that update and the remaining steps read NaN.
    """
    if steps < 1:
        return []
    losses: list[float] = []

    def loss_fn(output: Tensor, target: Tensor) -> Tensor:  # records every step's loss
        loss = F.cross_entropy(output, target)
        losses.append(float(loss.item()))
        return loss

    # sync_every=1: stop at the first non-finite loss on the GPU too, as on the CPU
    trainer = Trainer(model, SGD(model.parameters(), lr=lr), loss_fn, metrics=[], verbose=0,
                      sync_every=1)
    try:
        trainer.fit(_random_batches(x, y, steps, batch, seed), epochs=1)
    except NonFiniteLossError:
        losses += [float("nan")] * (steps - len(losses))
    return losses


def _random_batches(x: np.ndarray, y: np.ndarray, steps: int, batch: int,
                    seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch)
        yield on_device(x[idx]), on_device(y[idx])
