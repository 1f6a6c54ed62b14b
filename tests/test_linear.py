"""nn.Linear: torch's default initialisation, forward values, gradchecks with the parameters,
and agreement with torch."""
from __future__ import annotations

import math

import numpy as np
import pytest
from layer_checks import assert_layer_matches_torch, gradcheck_layer, randn, uniform_bound

import minidl as md
import minidl.nn as nn


def test_linear_default_init_matches_torch_formula():
    md.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)    # kaiming_uniform(a=sqrt(5)) gives exactly 1/sqrt(fan_in)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert w.shape == (300, 400) and w.dtype == np.float32
    assert uniform_bound(w) <= bound and uniform_bound(w) > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert uniform_bound(b) <= bound and b.std() == pytest.approx(bound / math.sqrt(3), rel=0.2)
    assert nn.Linear(3, 2, bias=False).bias is None


def test_linear_checks_its_sizes_when_built():
    with pytest.raises(ValueError, match=r"Linear: in_features must be a non-negative int, "
                                         r"got -1"):
        nn.Linear(-1, 3)
    with pytest.raises(ValueError, match=r"Linear: out_features must be a non-negative int, "
                                         r"got 2.5"):
        nn.Linear(3, 2.5)
    assert nn.Linear(np.int64(3), 2).in_features == 3


def test_linear_forward_and_gradcheck():
    lin = nn.Linear(4, 3)
    x = randn(5, 4)
    np.testing.assert_allclose(lin(x.float()).numpy(),
                               x.numpy() @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5)
    gradcheck_layer(lin, randn(5, 4, requires_grad=True))
    gradcheck_layer(nn.Linear(3, 2, bias=False), randn(2, 4, 3, requires_grad=True))
    gradcheck_layer(nn.Linear(3, 2, activation="tanh"), randn(2, 3, requires_grad=True))


@pytest.mark.torch
@pytest.mark.parametrize("make", [
    lambda tnn: (nn.Linear(5, 3), tnn.Linear(5, 3), (4, 5)),
], ids=["linear"])
def test_linear_matches_torch(make):
    torch = pytest.importorskip("torch")
    assert_layer_matches_torch(*make(torch.nn))
