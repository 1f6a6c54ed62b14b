"""Tensor factories (minidl/factories.py): torch's names, arguments and defaults, values checked
against NumPy, and the random ones reproducible from md.manual_seed."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md


def test_linspace_eye_empty_full(device):
    np.testing.assert_allclose(md.linspace(-1, 2, 7, device=device).numpy(),
                               np.linspace(-1, 2, 7, dtype=np.float32))
    assert md.linspace(0, 1, 5).dtype == np.float32 and md.linspace(0, 1, 0).shape == (0,)
    assert md.linspace(0, 1, 3, dtype=md.float64).dtype == np.float64
    np.testing.assert_array_equal(md.eye(3, device=device).numpy(), np.eye(3))
    np.testing.assert_array_equal(md.eye(2, 4, dtype=md.int64).numpy(), np.eye(2, 4, dtype=int))
    e = md.empty(2, 3, device=device)
    assert e.shape == (2, 3) and e.dtype == np.float32 and e.device == device
    assert md.empty((4,), dtype=md.int32).dtype == np.int32
    # torch infers full's dtype from the fill value
    assert md.full((2, 2), 7).dtype == np.int64 and md.full((2,), True).dtype == np.bool_
    assert md.full((2,), 0.5).dtype == np.float32
    np.testing.assert_array_equal(md.full((2, 3), 1.5, device=device).numpy(), np.full((2, 3), 1.5))
    with pytest.raises(ValueError, match="linspace: steps must be a non-negative int"):
        md.linspace(0, 1, 2.5)
    with pytest.raises(ValueError, match="expected a shape of non-negative ints"):
        md.zeros(2, -1)


def test_like_factories(device):
    x = md.tensor(np.arange(6.0).reshape(2, 3), device=device)  # float64
    for y in (md.zeros_like(x), md.ones_like(x), md.empty_like(x), md.full_like(x, 3.0),
              md.rand_like(x), md.randn_like(x)):
        assert y.shape == (2, 3) and y.dtype == np.float64 and y.device == device
    np.testing.assert_array_equal(md.full_like(x, 3.0).numpy(), np.full((2, 3), 3.0))
    np.testing.assert_array_equal(md.zeros_like(x, dtype=md.int64).numpy(), np.zeros((2, 3)))
    assert md.ones_like(x, dtype=md.float32).dtype == np.float32
    r = md.rand_like(x)
    assert ((r.numpy() >= 0) & (r.numpy() < 1)).all()
    k = md.randint_like(x, 5)
    assert k.dtype == np.float64 and set(np.unique(k.numpy())) <= set(range(5))
    with pytest.raises(TypeError, match="randn_like: needs a floating dtype"):
        md.randn_like(md.zeros(2, dtype=md.int64))


def test_requires_grad_dtype_device_on_every_factory(device):
    made = [md.zeros(2, requires_grad=True), md.ones(2, requires_grad=True),
            md.empty(2, requires_grad=True), md.full((2,), 1.0, requires_grad=True),
            md.rand(2, requires_grad=True), md.randn(2, requires_grad=True),
            md.arange(2.0, requires_grad=True), md.linspace(0, 1, 2, requires_grad=True),
            md.eye(2, requires_grad=True), md.zeros_like(md.ones(2), requires_grad=True),
            md.ones_like(md.ones(2), requires_grad=True),
            md.full_like(md.ones(2), 2.0, requires_grad=True),
            md.rand_like(md.ones(2), requires_grad=True),
            md.randn_like(md.ones(2), requires_grad=True),
            md.empty_like(md.ones(2), requires_grad=True)]
    assert all(t.requires_grad and t.is_leaf for t in made)
    for make in (md.zeros, md.ones, md.empty, md.rand, md.randn):
        t = make(3, dtype=md.float64, device=device)
        assert t.dtype == np.float64 and t.device == device
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        md.randint(0, 3, (2,), requires_grad=True)


def test_randint_randperm_reproduce_from_manual_seed(device):
    md.manual_seed(7)
    a = md.randint(3, 9, (4, 5), device=device)
    p = md.randperm(10, device=device)
    r = md.rand(3, device=device)
    md.manual_seed(7)
    np.testing.assert_array_equal(md.randint(3, 9, (4, 5), device=device).numpy(), a.numpy())
    np.testing.assert_array_equal(md.randperm(10, device=device).numpy(), p.numpy())
    np.testing.assert_array_equal(md.rand(3, device=device).numpy(), r.numpy())
    assert a.dtype == np.int64 and a.min().item() >= 3 and a.max().item() < 9
    assert sorted(p.tolist()) == list(range(10)) and p.dtype == np.int64
    assert md.randint(5, (3,)).shape == (3,)  # torch's randint(high, size)
    assert md.randint(0, 2, (2,), dtype=md.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"randint: high \(2\) must be greater than low \(2\)"):
        md.randint(2, 2, (3,))
    with pytest.raises(ValueError, match="randperm: n must be a non-negative int"):
        md.randperm(-1)


def test_from_numpy_shares_memory_and_as_tensor_shares_when_it_can():
    a = np.arange(4.0)
    t = md.from_numpy(a)
    assert t.dtype == np.float64  # kept, as torch.from_numpy
    a[0] = 42.0
    assert t[0].item() == 42.0  # one memory
    t.data[1] = -1.0
    assert a[1] == -1.0
    with pytest.raises(TypeError, match=r"from_numpy: expected a numpy.ndarray, got list"):
        md.from_numpy([1.0, 2.0])
    shared = md.as_tensor(a)
    assert shared.data is a
    copied = md.as_tensor(a, dtype=md.float32)
    assert copied.dtype == np.float32 and copied.data is not a
    t2 = md.ones(2)
    assert md.as_tensor(t2) is t2
    assert md.as_tensor([1.0, 2.0]).dtype == np.float32  # a list is copied, as md.tensor


def test_arange_torch_and_numpy_names():
    assert md.arange(5).dtype == np.int64 and md.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert md.arange(1, 2, 0.25).tolist() == [1.0, 1.25, 1.5, 1.75]
    assert md.arange(0, end=3, dtype=md.float64).dtype == np.float64
    assert md.arange(0, stop=3).tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="arange: pass end= .* or stop="):
        md.arange(0, end=3, stop=3)
