"""Shared fixtures: every device-aware test runs on 'cpu' and, under the `gpu` marker, 'cuda'."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

import minidl as md
from minidl.backend import cupy_available, xp_for

settings.register_profile("minidl", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("minidl")

HAS_GPU = cupy_available()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """The device name; the 'cuda' case is skipped on machines without a GPU."""
    return request.param


@pytest.fixture
def xp(device):
    """The array module (numpy or cupy) of the device under test."""
    return xp_for(device)


@pytest.fixture(autouse=True)
def _seed():
    md.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def threads():
    """``threads(n)`` sets minidl's CPU thread count inside a test; restored afterwards."""
    before = md.get_num_threads()
    yield md.set_num_threads
    md.set_num_threads(before)
