"""Helpers shared by the op tests (test_elementwise, test_reduction, test_linalg, test_shape).

Every differentiable op is checked the same way: forward against NumPy, float64 gradcheck over
all of its inputs on hypothesis-generated shapes (broadcasting pairs, size-1 and, where it makes
sense, empty dimensions). Inputs are drawn away from kinks (|x| at 0, ties in max/min) on
purpose; the tie-breaking rule is tested on its own.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import minidl as md

# `device` is a function-scoped fixture holding only a name, so reusing it across the
# examples of one hypothesis test is safe.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**16)


def leaf(a, device, requires_grad=True):
    """A float64 leaf on ``device``."""
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=requires_grad)


def close(t, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(t.numpy(), expected, rtol=rtol, atol=atol)
