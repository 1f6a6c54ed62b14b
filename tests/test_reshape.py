"""nn.Flatten and nn.Reshape: gradchecks."""
from __future__ import annotations

import pytest
from layer_checks import randn

import minidl as md
import minidl.nn as nn


@pytest.mark.parametrize("layer", [
    lambda: nn.Flatten(),
    lambda: nn.Reshape(3, 20),
], ids=["flatten", "reshape"])
def test_reshape_layers_gradcheck(layer):
    m = layer()
    x = randn(2, 3, 4, 5, requires_grad=True)
    assert md.gradcheck(m, x)
