"""nn.Dropout: the drop rate, inverted scaling, eval mode, errors, a seeded gradcheck; mc_predict."""
from __future__ import annotations

import numpy as np
import pytest
from layer_checks import gradcheck_layer, randn

import minidl as md
import minidl.nn as nn


def test_dropout_layer():
    md.manual_seed(0)
    d = nn.Dropout(0.25)
    x = md.ones(200, 50)
    y = d(x).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got '0.5'"):
        nn.Dropout("0.5")
    gradcheck_layer(nn.Dropout(0.3), randn(4, 5, requires_grad=True), seed=3)


def test_mc_predict_keeps_dropout_on_and_bn_in_eval():
    md.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2))
    x = md.randn(4, 3)
    mean, std = nn.mc_predict(net, x, n=50)
    assert mean.shape == (4, 2) and std.shape == (4, 2)
    assert float(std.numpy().min()) > 0          # dropout was active
    assert all(m.training for m in net.modules())  # modes restored
    net.eval()
    with md.no_grad():
        det = net(x).numpy()
    # the MC mean estimates the deterministic output (inverted dropout is unbiased)
    np.testing.assert_allclose(mean.numpy(), det, atol=4 * float(std.numpy().max()) / np.sqrt(50) + 1e-3)
    assert all(not m.training for m in net.modules())
    with pytest.raises(ValueError, match="n must be"):
        nn.mc_predict(net, x, n=0)


def test_mc_predict_uses_bn_running_stats():
    md.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.0))
    net.train()
    net(md.randn(16, 3) * 5 + 3)      # move running stats away from the batch stats
    x = md.randn(8, 3)
    mean, std = nn.mc_predict(net, x, n=3)
    net.eval()
    with md.no_grad():
        np.testing.assert_allclose(mean.numpy(), net(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), 0.0, atol=1e-6)
