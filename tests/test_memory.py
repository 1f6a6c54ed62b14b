"""Memory and efficiency of whole training steps (issue 8).

* a forward + backward of a CNN leaves no Function and no saved array alive;
* repeated training steps do not grow memory (CPU: traced NumPy allocations; GPU: CuPy's pool);
* optimiser updates allocate nothing as large as a parameter, and the cache-sized slices they
  work in give bit-for-bit the result of whole-array arithmetic;
* gradients accumulate into existing leaf gradients in place, without writing through views;
* the channels-last reduction fast path equals NumPy's sum;
* cross_entropy's label check does not read the GPU back (NaN instead; ValueError on the CPU).
"""
from __future__ import annotations

import gc
import itertools
import tracemalloc
import weakref

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
import minidl.nn as nn
import minidl.optim as optim
from minidl.autograd import Function, Tensor
from minidl.backend import get_array_module, to_numpy
from minidl.functional.reduction import reduce_sum
from minidl.optim import optimizer as optimizer_module


def small_cnn() -> nn.Module:
    """Every layer kind a lecture CNN uses: conv (+bias), BN, ReLU, max/avg pooling, a
    residual block, dropout, flatten, linear."""
    block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Residual(block), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(8 * 4 * 4, 10))


def models(device: str) -> list[nn.Module]:
    from minidl import models as zoo
    return [small_cnn().to(device), zoo.lenet5().to(device), zoo.cifar_resnet(8).to(device)]


def batch(model: nn.Module, device: str, n: int = 4) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(0)
    c = 1 if model.__class__.__name__ == "LeNet5" else 3
    size = 32 if c == 1 or model.__class__.__name__ == "CifarResNet" else 16
    x = md.tensor(rng.standard_normal((n, c, size, size)).astype(np.float32), device=device)
    y = md.tensor(rng.integers(0, 10, n), device=device)
    return x, y


def live_functions() -> list[Function]:
    gc.collect()
    # type(), not isinstance(): isinstance may read __class__, which some lazy modules warn on
    return [o for o in gc.get_objects() if issubclass(type(o), Function)]


def saved_arrays(loss: Tensor, keep: set[int]) -> list[weakref.ref]:
    """Weak references to every array the graph behind ``loss`` holds for backward (saved
    attributes, kept inputs, kept outputs), except those in ``keep`` (data and parameters)."""
    refs, seen, stack = [], set(), [loss.creator]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        for value in vars(fn).values():
            items = value if isinstance(value, tuple) else (value,)
            for v in items:
                arr = v.data if isinstance(v, Tensor) else v
                if hasattr(arr, "shape") and hasattr(arr, "dtype") and id(arr) not in keep:
                    try:
                        refs.append(weakref.ref(arr))
                    except TypeError:  # an array type without weak references
                        pass
        stack.extend(p[0] for p in vars(fn).get("parents", ()) if isinstance(p, tuple))
    return refs


# ---- nothing of the graph survives backward -----------------------------------------------

@pytest.mark.parametrize("which", [0, 1, 2], ids=["small_cnn", "lenet5", "cifar_resnet8"])
def test_forward_backward_leaves_no_function_or_saved_array_alive(which, device):
    model = models(device)[which]
    model.train()
    x, y = batch(model, device)
    keep = {id(x.data), id(y.data)} | {id(t.data) for t in model.state_dict().values()}
    before = len(live_functions())
    loss = F.cross_entropy(model(x), y)
    assert len(live_functions()) > before + 10  # the graph is there
    saved = saved_arrays(loss, keep)
    assert len(saved) > 10 and sum(r() is not None for r in saved) > 10
    gc.collect()
    gc.disable()  # freed by reference counting alone, the moment backward is done with them
    try:
        loss.backward()
        assert all(r() is None for r in saved)
        # only the root's node is left (loss.creator), emptied of all it saved
        alive = [fn for fn in gc.get_objects() if issubclass(type(fn), Function)]
        assert alive == [loss.creator]
        assert set(vars(loss.creator)) == {"generation"}
        del loss, alive
    finally:
        gc.enable()
    assert len(live_functions()) == before
    assert all(p.grad is not None for p in model.parameters())


def test_functions_are_freed_after_each_backward_in_a_training_loop(device):
    model = small_cnn().to(device)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = batch(model, device)
    before = len(live_functions())
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert len(live_functions()) == before


# ---- repeated steps do not grow memory ----------------------------------------------------

def _train_steps(model: nn.Module, device: str, steps: int, zero_to_none: bool = True):
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = batch(model, device, n=8)
    for _ in range(steps):
        opt.zero_grad(set_to_none=zero_to_none)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        yield


@pytest.mark.parametrize("zero_to_none", [True, False])
def test_repeated_cpu_steps_do_not_grow_traced_memory(zero_to_none):
    model = small_cnn()
    steps = _train_steps(model, "cpu", 8, zero_to_none)
    for _ in range(3):  # warm-up: optimiser state and scratch now exist
        next(steps)
    gc.collect()
    tracemalloc.start()
    try:
        next(steps)
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in steps:
            pass
        gc.collect()
        last = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # not one activation's worth (8x8x16x16 float32 = 64 KB) may be left behind per step
    assert last - first < 16 * 1024


@pytest.mark.gpu
def test_repeated_gpu_steps_do_not_grow_the_cupy_pool():
    import cupy  # noqa: PLC0415 - only on a GPU machine

    from minidl.models import cifar_resnet

    pool = cupy.get_default_memory_pool()
    steps = _train_steps(cifar_resnet(8).to("cuda"), "cuda", 12)
    for _ in range(3):
        next(steps)
    cupy.cuda.get_current_stream().synchronize()
    used, held = pool.used_bytes(), pool.total_bytes()
    for _ in steps:
        pass
    cupy.cuda.get_current_stream().synchronize()
    gc.collect()
    assert pool.used_bytes() <= used        # nothing kept from step to step
    assert pool.total_bytes() <= held       # and no new blocks: the pool is reused


# ---- optimisers: no large temporaries, and slicing changes no bit -------------------------

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "sgd-nesterov-wd-maximize": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                    weight_decay=1e-2, maximize=True),
    "sgd-dampening": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3),
    "adam-amsgrad-wd": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-2),
    "nadam-wd": lambda ps: optim.Nadam(ps, lr=1e-2, weight_decay=1e-2),
    "rmsprop-centered-momentum": lambda ps: optim.RMSprop(ps, lr=1e-2, momentum=0.9,
                                                          centered=True, weight_decay=1e-3),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=1e-2, lr_decay=1e-3, weight_decay=1e-3,
                                        initial_accumulator_value=0.1),
    "radam-decoupled-maximize": lambda ps: optim.RAdam(ps, lr=1e-2, weight_decay=1e-2,
                                                       decoupled_weight_decay=True,
                                                       maximize=True),
    "adamax-wd": lambda ps: optim.Adamax(ps, lr=1e-2, weight_decay=1e-3),
    "adadelta-wd": lambda ps: optim.Adadelta(ps, weight_decay=1e-3),
}


def _run(make, arrays, grads) -> list[np.ndarray]:
    ps = [Tensor(a.copy(order="K"), requires_grad=True) for a in arrays]
    opt = make(ps)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = Tensor(g.copy())
        opt.step()
    return [p.data for p in ps]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_sliced_updates_equal_whole_array_updates_bit_for_bit(name, monkeypatch):
    rng = np.random.default_rng(1)
    # a parameter spanning several slices plus a ragged end, a small one, a 0-d one
    shapes = [(5 * 1000 + 7, 3), (4, 5), ()]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    monkeypatch.setattr(optimizer_module, "_SLICE", 1000)
    sliced = _run(OPTIMIZERS[name], arrays, grads)
    monkeypatch.setattr(optimizer_module, "_SLICE", 1 << 30)
    whole = _run(OPTIMIZERS[name], arrays, grads)
    # non-contiguous parameters take the whole-array path (fresh scratch arrays)
    transposed = _run(OPTIMIZERS[name], [a.T for a in arrays],
                      [[g.T for g in gs] for gs in grads])
    for a, b, c in zip(sliced, whole, transposed):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c.T)


def test_sgd_momentum_matches_the_plain_float32_expressions():
    """The in-place, sliced update is the textbook one, rounding for rounding."""
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(300_000).astype(np.float32)  # more than one slice
    grads = [rng.standard_normal(p0.shape).astype(np.float32) for _ in range(3)]
    got = _run(lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3), [p0], [[g] for g in grads])[0]
    p, buf = p0.copy(), None
    for g in grads:
        d = g + p * 1e-3
        buf = d.copy() if buf is None else buf * 0.9 + d
        p = p - 0.05 * buf
    assert np.array_equal(got, p)


@pytest.mark.parametrize("name", ["sgd-momentum", "adam-amsgrad-wd", "rmsprop-centered-momentum"])
def test_optimizer_step_allocates_no_parameter_sized_temporary(name):
    p = Tensor(np.random.default_rng(3).standard_normal(1 << 21).astype(np.float32),
               requires_grad=True)  # 8 MB
    p.grad = Tensor(np.ones_like(p.data))
    opt = OPTIMIZERS[name]([p])
    opt.step()  # the first step creates the optimiser state (parameter-sized, once)
    tracemalloc.start()
    try:
        for _ in range(2):
            opt.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < p.data.nbytes // 8


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_scalar_parameter_state_survives_save_and_load(name, tmp_path):
    """0-d parameters have 0-d state arrays, which look like the scalar counters on disk."""
    from minidl import io

    a, b = (Tensor(np.array(1.5, np.float32), requires_grad=True) for _ in range(2))
    oa, ob = OPTIMIZERS[name]([a]), OPTIMIZERS[name]([b])
    for g in (0.3, -0.7):
        for p, o in ((a, oa), (b, ob)):
            p.grad = Tensor(np.array(g, np.float32))
            o.step()
    io.save(oa.state_dict(), tmp_path / "opt.npz")
    resumed = OPTIMIZERS[name]([a])
    resumed.load_state_dict(io.load(tmp_path / "opt.npz"))
    for g in (1.0, 2.0):
        for p, o in ((a, resumed), (b, ob)):
            p.grad = Tensor(np.array(g, np.float32))
            o.step()
    assert float(a.data) == float(b.data)


# ---- gradient accumulation into leaves ----------------------------------------------------

def test_second_backward_accumulates_into_the_same_grad_array(device):
    w = md.tensor(np.arange(6.0).reshape(2, 3), device=device, requires_grad=True)
    (w * w).sum().backward()
    first = w.grad.data
    (w * 3.0).sum().backward()
    assert w.grad.data is first  # in place, as torch does
    np.testing.assert_allclose(to_numpy(w.grad.data), 2 * np.arange(6.0).reshape(2, 3) + 3)


def test_zero_grad_keeps_arrays_when_not_set_to_none(device):
    lin = nn.Linear(3, 2).to(device)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    x = md.tensor(np.ones((4, 3), np.float32), device=device)
    lin(x).sum().backward()
    arrays = [p.grad.data for p in lin.parameters()]
    opt.zero_grad(set_to_none=False)
    assert [p.grad.data for p in lin.parameters()] == arrays
    assert all(float(abs(a).sum()) == 0 for a in arrays)
    lin(x).sum().backward()
    assert all(p.grad.data is a for p, a in zip(lin.parameters(), arrays))
    np.testing.assert_allclose(to_numpy(lin.bias.grad.data), [4.0, 4.0])


def test_accumulation_never_writes_through_a_view_or_a_shared_array():
    x = md.tensor(np.ones(4), requires_grad=True)
    y = md.tensor(np.ones(4), requires_grad=True)
    (x + y).sum().backward()  # both receive the same gradient array: each gets its own
    assert not np.shares_memory(x.grad.data, y.grad.data)
    backing = np.zeros(8)
    x.grad = Tensor(backing[::2])  # a user-assigned view
    (x * 2.0).sum().backward()
    assert not backing.any()
    np.testing.assert_allclose(x.grad.numpy(), [2.0] * 4)
    frozen = np.zeros(4)
    frozen.flags.writeable = False
    y.grad = Tensor(frozen)
    (y * 2.0).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [2.0] * 4)


# ---- the reduction fast path ----------------------------------------------------------------

def test_reduce_sum_equals_numpy_sum_in_every_memory_order():
    rng = np.random.default_rng(4)
    for shape in [(6, 5, 12, 13), (64, 120), (3, 1, 40, 60)]:
        base = rng.standard_normal(shape).astype(np.float32)
        for perm in itertools.permutations(range(len(shape))):
            # the same values stored in another axis order (channels-last is one of them)
            x = np.ascontiguousarray(base.transpose(perm)).transpose(np.argsort(perm))
            for k in range(1, len(shape)):
                for axes in itertools.combinations(range(len(shape)), k):
                    for keepdims in (False, True):
                        want = x.astype(np.float64).sum(axis=axes, keepdims=keepdims)
                        got = reduce_sum(x, axes, keepdims)
                        assert got.shape == want.shape and got.dtype == np.float32
                        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_conv_bias_gradient_through_the_fast_path_matches_gradcheck():
    x = md.tensor(np.random.default_rng(5).standard_normal((3, 2, 9, 9)), requires_grad=True)
    w = md.tensor(np.random.default_rng(6).standard_normal((4, 2, 3, 3)), requires_grad=True)
    b = md.tensor(np.random.default_rng(7).standard_normal(4), requires_grad=True)
    assert md.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1) ** 2, x, w, b)


# ---- feature maps keep their memory layout --------------------------------------------------

def _channels_last(a) -> bool:
    return a.transpose(0, 2, 3, 1).flags.c_contiguous


def test_pad_cat_and_indexing_gradient_keep_channels_last_layout():
    """The CPU convs return channels-last maps; an op that builds a new map from one (option-A
    shortcut padding, DenseNet/GoogLeNet concatenation, the gradient of subsampling) must not
    turn it NCHW, or every later conv and elementwise op pays a transposing copy."""
    rng = np.random.default_rng(8)
    data = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    cl = np.ascontiguousarray(data.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for arr, keeps in ((cl, _channels_last), (data, lambda a: a.flags.c_contiguous)):
        x = Tensor(arr.copy(order="K"), requires_grad=True)
        padded = F.pad(x, (0, 0, 1, 0, 2, 1), value=0.5)
        np.testing.assert_array_equal(
            padded.data, np.pad(data, [(0, 0), (2, 1), (1, 0), (0, 0)], constant_values=0.5))
        joined = F.cat([x, x * 2.0], axis=1)
        np.testing.assert_array_equal(joined.data, np.concatenate([data, 2 * data], axis=1))
        sub = x[:, :, ::2, ::2]
        (sub * sub).sum().backward()
        want = np.zeros_like(data)
        want[:, :, ::2, ::2] = 2 * data[:, :, ::2, ::2]
        np.testing.assert_array_equal(x.grad.data, want)
        assert keeps(padded.data) and keeps(joined.data) and keeps(x.grad.data)


# ---- no host-device sync in cross_entropy --------------------------------------------------

def test_cross_entropy_label_range(device):
    logits = md.tensor(np.zeros((3, 4), np.float32), device=device, requires_grad=True)
    bad = md.tensor(np.array([0, 4, 1]), device=device)
    if device == "cpu":
        with pytest.raises(ValueError, match=r"\[0, 4\).*range \[0, 4\]"):
            F.cross_entropy(logits, bad)
    else:
        # no read-back on the GPU: the bad sample's loss is NaN
        losses = F.cross_entropy(logits, bad, reduction="none").numpy()
        assert np.isnan(losses[1]) and np.isfinite(losses[[0, 2]]).all()
        assert np.isnan(F.nll_loss(F.log_softmax(logits, axis=1), bad).item())
    with md.detect_anomaly(), pytest.raises(ValueError, match="target labels"):
        F.cross_entropy(logits, bad)
    xp = get_array_module(logits.data)
    good = md.tensor(np.array([0, 3, 1]), device=device)
    loss = F.cross_entropy(logits, good)
    assert xp is get_array_module(loss.data)
    np.testing.assert_allclose(loss.item(), np.log(4.0), rtol=1e-6)
