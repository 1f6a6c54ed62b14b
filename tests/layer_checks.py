"""Helpers shared by the layer tests: random float64 tensors, a gradcheck over a layer's
inputs AND parameters, and a forward/state comparison with the torch layer."""
from __future__ import annotations

import numpy as np

import minidl as md
import minidl.nn as nn

RNG = np.random.default_rng(0)


def randn(*shape, requires_grad=False, device="cpu"):
    return md.tensor(RNG.normal(size=shape), device=device, requires_grad=requires_grad)


def gradcheck_layer(layer, *inputs, seed=None):
    """Float64 gradcheck of ``layer(*inputs)`` w.r.t. the inputs AND every parameter."""
    layer.double()
    named = list(layer.named_parameters())
    names = [n for n, _ in named]
    leaves = [md.tensor(p.numpy().copy(), requires_grad=True) for _, p in named]
    n_in = len(inputs)

    def fn(*args):
        if seed is not None:
            md.manual_seed(seed)
        return nn.functional_call(layer, dict(zip(names, args[n_in:])), *args[:n_in])
    assert md.gradcheck(fn, *inputs, *leaves)


def uniform_bound(a):
    return float(np.abs(a).max())


def assert_layer_matches_torch(ours, theirs, shape):
    """Load torch's state into ``ours``; outputs (train and eval) and the state afterwards
    (running statistics updated alike) agree."""
    import torch

    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        y = ours(md.tensor(x))
        ty = theirs(torch.tensor(x))
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=f"{type(ours).__name__} {mode}")
    for k, v in theirs.state_dict().items():   # running statistics updated alike
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-5,
                                   err_msg=k)
