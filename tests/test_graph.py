"""Graph nodes (Residual, Concat, Add) and whole networks of layers: values, a gradcheck
through a network, symbolic graphs, and a network on a device."""
from __future__ import annotations

import numpy as np
import pytest
from layer_checks import gradcheck_layer, randn

import minidl as md
import minidl.nn as nn


def test_residual_and_concat_values():
    block = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    res = nn.Residual(block)
    x = randn(2, 3).float()
    np.testing.assert_allclose(res(x).numpy(), block(x).numpy() + x.numpy(), rtol=1e-6)
    proj = nn.Residual(nn.Linear(3, 4), shortcut=nn.Linear(3, 4, bias=False))
    np.testing.assert_allclose(proj(x).numpy(), (proj.block(x) + proj.shortcut(x)).numpy(),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"Residual: block output \(2, 4\) and shortcut"):
        nn.Residual(nn.Linear(3, 4))(x)
    cat = nn.Concat(nn.Linear(3, 2), nn.Identity(), axis=1)
    out = cat(x)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out.numpy()[:, 2:], x.numpy())
    assert nn.Concat()(x, x).shape == (2, 6)
    assert nn.Concat(axis=0)([x, x]).shape == (4, 3)
    with pytest.raises(ValueError, match=r"Concat\(axis=1\): cannot join"):
        nn.Concat()(x, md.ones(3, 3))
    assert list(nn.Sequential(proj).state_dict()) == ["0.block.weight", "0.block.bias",
                                                      "0.shortcut.weight"]
    np.testing.assert_allclose(nn.Add()(x, x, x).numpy(), 3 * x.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="different shapes"):
        nn.Add()(x, md.ones(2, 2))


def test_gradcheck_through_a_network_with_residual_and_concat():
    md.manual_seed(0)
    inception = nn.Concat(
        nn.Conv2d(2, 2, 1),
        nn.Sequential(nn.Conv2d(2, 2, 1), nn.Tanh(), nn.Conv2d(2, 3, 3, padding=1)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(2, 1, 1)),
    )
    net = nn.Sequential(
        nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(2, 2, 3, padding=1))),
        nn.Tanh(),
        inception,
        nn.Residual(nn.Sequential(nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4)),
                    shortcut=nn.Conv2d(6, 4, 1, bias=False)),
        nn.Flatten(),
        nn.Linear(4 * 9, 2),
    )
    gradcheck_layer(net, randn(2, 2, 3, 3, requires_grad=True))


def test_graph_nodes_build_symbolic_graphs():
    inp = nn.Input((2, 4, 4))
    out = nn.Residual(nn.Conv2d(2, 2, 3, padding=1))(inp)
    out = nn.Concat(nn.Conv2d(2, 3, 1), nn.MaxPool2d(1))(out)
    assert out.shape == (None, 5, 4, 4)
    model = nn.GraphModule(inp, out)
    assert model(md.randn(3, 2, 4, 4)).shape == (3, 5, 4, 4)


def test_layer_on_device(device):
    md.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3),
                        nn.Normalization(0.0, 2.0)).to(device)
    x = md.randn(2, 2, 4, 4, device=device)
    y = net(x)
    assert y.device == device and y.shape == (2, 3)
    y.sum().backward()
    assert all(p.grad.device == device for p in net.parameters())
    cpu = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3),
                        nn.Normalization(0.0, 2.0))
    cpu.load_state_dict(net.state_dict())
    np.testing.assert_allclose(cpu(x.to("cpu")).numpy(), y.numpy(), rtol=1e-4, atol=1e-5)
