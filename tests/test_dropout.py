"""nn.Dropout: the drop rate, inverted scaling, eval mode, errors and a seeded gradcheck."""
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
