"""nn.init: fans, gains, the statistics and bounds of every initialiser, and seeding."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minidl as md
import minidl.nn as nn
from minidl.nn import init


def test_fans():
    assert init.calculate_fan_in_and_fan_out(md.zeros(5, 3)) == (3, 5)
    assert init.calculate_fan_in_and_fan_out(md.zeros(8, 4, 3, 3)) == (36, 72)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.calculate_fan_in_and_fan_out(md.zeros(3))


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("conv2d") == 1.0 and init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("fn,expected_std", [
    (init.xavier_uniform_, math.sqrt(2 / (72 + 36))),
    (init.glorot_uniform_, math.sqrt(2 / (72 + 36))),
    (init.xavier_normal_, math.sqrt(2 / (72 + 36))),
    (init.glorot_normal_, math.sqrt(2 / (72 + 36))),
    (lambda t: init.kaiming_uniform_(t, nonlinearity="relu"), math.sqrt(2 / 36)),
    (lambda t: init.kaiming_normal_(t, nonlinearity="relu"), math.sqrt(2 / 36)),
    (lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 72)),
    (init.he_uniform_, math.sqrt(2 / 36)),
    (init.he_normal_, math.sqrt(2 / 36)),
    (init.lecun_normal_, math.sqrt(1 / 36)),
    (init.lecun_uniform_, math.sqrt(1 / 36)),
    (lambda t: init.normal_(t, 1.0, 0.5), 0.5),
    (lambda t: init.uniform_(t, -2.0, 2.0), 4 / math.sqrt(12)),
    (lambda t: init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0), 0.8796),
], ids=["xavier_u", "glorot_u", "xavier_n", "glorot_n", "kaiming_u", "kaiming_n",
        "kaiming_n_out", "he_u", "he_n", "lecun_n", "lecun_u", "normal", "uniform", "trunc"])
def test_initialiser_statistics(fn, expected_std, device):
    md.manual_seed(0)
    t8 = md.zeros(8, 4, 3, 3, device=device)           # fan_in 36, fan_out 72
    assert init.calculate_fan_in_and_fan_out(t8) == (36, 72)
    draws = []   # 16 draws of 288 values each, for a tight estimate of the std
    for _ in range(16):
        out = fn(t8)
        assert out is t8 and t8.device == device and t8.dtype == np.float32
        draws.append(t8.numpy().copy())
    values = np.concatenate([d.ravel() for d in draws])
    assert values.std() == pytest.approx(expected_std, rel=0.05)


def test_uniform_initialisers_respect_bounds():
    t = md.zeros(64, 32)
    init.xavier_uniform_(t, gain=2.0)
    assert np.abs(t.numpy()).max() <= 2.0 * math.sqrt(6 / 96)
    init.kaiming_uniform_(t, a=math.sqrt(5))
    assert np.abs(t.numpy()).max() <= 1 / math.sqrt(32)
    init.trunc_normal_(t, 0.0, 1.0, -0.5, 0.5)
    assert np.abs(t.numpy()).max() <= 0.5


def test_constant_initialisers_and_rebinding():
    t = md.randn(3, 2)
    shared = t.data
    init.zeros_(t)
    assert t.numpy().sum() == 0 and shared.sum() != 0     # data rebound, not written into
    init.ones_(t)
    assert t.numpy().sum() == 6
    init.constant_(t, 0.5)
    assert np.all(t.numpy() == 0.5) and t.dtype == np.float32
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(t, mode="fan_avg")


def test_init_is_seeded():
    md.manual_seed(5)
    a = nn.Linear(4, 4).weight.numpy()
    md.manual_seed(5)
    b = nn.Linear(4, 4).weight.numpy()
    np.testing.assert_array_equal(a, b)
