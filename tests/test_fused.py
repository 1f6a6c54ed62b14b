"""Fused Functions (minidl.functional.fused): forward against NumPy and against the unfused
composition (bitwise), float64 gradchecks and gradgradchecks over all inputs, and the zoo's
blocks on the fused path giving the same bits as on the unfused one."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl.functional.fused import add_relu, batch_norm_relu


def _data(shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


def _np_bn_relu(x, g, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return np.maximum((x - mean) / np.sqrt(var + eps) * g.reshape(shape) + b.reshape(shape), 0)


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 4)])
def test_batch_norm_relu_forward_matches_numpy(device, shape):
    x, g, b = _data(shape), _data(shape[1], 1), _data(shape[1], 2)
    rm, rv = md.zeros(shape[1], dtype=np.float64, device=device), \
        md.ones(shape[1], dtype=np.float64, device=device)
    y = batch_norm_relu(md.tensor(x, device=device), rm, rv, md.tensor(g, device=device),
                        md.tensor(b, device=device), training=True, momentum=0.1)
    np.testing.assert_allclose(y.numpy(), _np_bn_relu(x, g, b), rtol=1e-10, atol=1e-12)
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // shape[1]
    np.testing.assert_allclose(rm.numpy(), 0.1 * x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.9 + 0.1 * x.var(axis=axes) * m / (m - 1),
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_relu_bitwise_equals_composition(device, dtype, channels_last):
    x = _data((8, 16, 6, 6), dtype=dtype)
    if channels_last:   # the layout minidl's convolutions produce on the CPU
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    gy = _data((8, 16, 6, 6), 3, dtype)
    results = []
    for fused in (True, False):
        xt = md.tensor(x, device=device, requires_grad=True)
        g = md.tensor(_data(16, 1, dtype), device=device, requires_grad=True)
        b = md.tensor(_data(16, 2, dtype), device=device, requires_grad=True)
        rm, rv = md.zeros(16, dtype=dtype, device=device), md.ones(16, dtype=dtype, device=device)
        if fused:
            y = batch_norm_relu(xt, rm, rv, g, b, training=True)
        else:
            y = F.relu(F.batch_norm(xt, rm, rv, g, b, training=True))
        y.backward(md.tensor(gy, device=device))
        results.append([a.numpy() for a in (y, xt.grad, g.grad, b.grad, rm, rv)])
    for a, b in zip(*results):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_batch_norm_relu_eval_and_bad_input():
    x = md.tensor(_data((4, 3, 2, 2)))
    rm, rv = md.tensor(_data(3, 1)), md.tensor(np.abs(_data(3, 2)) + 0.5)
    np.testing.assert_array_equal(batch_norm_relu(x, rm, rv).numpy(),
                                  F.relu(F.batch_norm(x, rm, rv)).numpy())
    with pytest.raises(ValueError, match="batch_norm: weight of shape"):
        batch_norm_relu(x, None, None, md.ones(4), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_relu(md.tensor(_data((1, 3))), None, None, training=True)


def test_batch_norm_relu_gradcheck(device):
    # values away from the ReLU kink: the pre-activation is checked to be |.| > 1e-3
    x = md.tensor(_data((3, 2, 3, 3)), device=device, requires_grad=True)
    g = md.tensor(_data(2, 1), device=device, requires_grad=True)
    b = md.tensor(_data(2, 2), device=device, requires_grad=True)
    pre = F.batch_norm(x, None, None, g, b, training=True).numpy()
    assert np.abs(pre).min() > 1e-3

    def fn(x, g, b):
        return batch_norm_relu(x, None, None, g, b, training=True)

    assert md.gradcheck(fn, x, g, b)
    assert md.gradgradcheck(fn, x, g, b)


def test_batch_norm_relu_second_derivative_in_every_input(device):
    """The backward's backward (BatchNormGrad with the ReLU mask), also in the incoming
    gradient v, which a gradgradcheck with fixed weights does not reach."""
    rng = np.random.default_rng(5)
    x = md.tensor(_data((3, 2, 2, 3), 4), device=device, requires_grad=True)
    g = md.tensor(_data(2, 1), device=device, requires_grad=True)
    b = md.tensor(_data(2, 2), device=device, requires_grad=True)
    v = md.tensor(_data((3, 2, 2, 3), 6), device=device, requires_grad=True)
    u = [md.tensor(rng.standard_normal(t.shape), device=device) for t in (x, g, b)]
    assert np.abs(F.batch_norm(x, None, None, g, b, training=True).numpy()).min() > 1e-3

    def second(op):
        def fn(x, g, b, v):
            with md.enable_grad():      # gradcheck's numeric side runs under no_grad
                y = op(x, g, b)
                grads = md.grad(y, (x, g, b), grad_outputs=v, create_graph=True)
                return sum((d * w).sum() for d, w in zip(grads, u))
        return fn

    fn = second(lambda x, g, b: batch_norm_relu(x, None, None, g, b, training=True))
    composed = second(lambda x, g, b: F.relu(F.batch_norm(x, None, None, g, b, training=True)))

    assert md.gradcheck(fn, x, g, b, v)
    for t in (x, g, b, v):
        t.grad = None
    fn(x, g, b, v).backward()
    # beta enters the gradients only through the (piecewise constant) mask: no gradient
    fused = [None if t.grad is None else t.grad.numpy() for t in (x, g, b, v)]
    for t in (x, g, b, v):
        t.grad = None
    composed(x, g, b, v).backward()
    assert fused[2] is None and b.grad is None
    for a, t in zip(fused, (x, g, b, v)):
        if a is not None:
            np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_add_relu_forward_and_bitwise(device):
    a, b, gy = _data((4, 5, 3), 0, np.float32), _data((4, 5, 3), 1, np.float32), \
        _data((4, 5, 3), 2, np.float32)
    results = []
    for fused in (True, False):
        at = md.tensor(a, device=device, requires_grad=True)
        bt = md.tensor(b, device=device, requires_grad=True)
        y = add_relu(at, bt) if fused else F.relu(at + bt)
        y.backward(md.tensor(gy, device=device))
        results.append([t.numpy() for t in (y, at.grad, bt.grad)])
    np.testing.assert_array_equal(results[0][0], np.maximum(a + b, 0))
    np.testing.assert_array_equal(results[0][1], gy * (a + b > 0))
    for u, v in zip(*results):
        np.testing.assert_array_equal(u, v)


def test_add_relu_gradcheck_and_partial_grads(device):
    a = md.tensor(_data((3, 4), 0), device=device, requires_grad=True)
    b = md.tensor(_data((3, 4), 1), device=device, requires_grad=True)
    assert np.abs(a.numpy() + b.numpy()).min() > 1e-3
    assert md.gradcheck(add_relu, a, b)
    assert md.gradgradcheck(add_relu, a, b)
    c = md.tensor(_data((3, 4), 1), device=device)      # no gradient asked for b
    add_relu(a, c).sum().backward()
    assert c.grad is None


def test_add_relu_broadcasting_falls_back():
    a, b = md.tensor(_data((3, 4)), requires_grad=True), md.tensor(_data(4, 1), requires_grad=True)
    y = add_relu(a, b)
    np.testing.assert_array_equal(y.numpy(), np.maximum(a.numpy() + b.numpy(), 0))
    y.sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), (a.numpy() + b.numpy() > 0).sum(axis=0))


# ---- the zoo on the fused path --------------------------------------------------------------

def _step_results(model, x, y):
    """Output, loss and every parameter gradient and buffer of one training forward/backward."""
    model.train()
    model.zero_grad()
    md.manual_seed(1)       # the same dropout masks (GoogLeNet) on both paths
    out = model(x)
    F.cross_entropy(out, y).backward()
    return [out.numpy()] + [p.grad.numpy() for p in model.parameters()] + \
        [b.numpy() for b in model.buffers()]


def _unfuse(model):
    """Disable the fused path (the models take it only when no module has a hook)."""
    handles = [m.register_forward_hook(lambda *a: None) for m in model.modules()]
    return handles


@pytest.mark.parametrize("name", ["cifar_resnet20", "resnet18", "resnet50", "googlenet",
                                  "densenet121"])
def test_zoo_fused_path_is_bitwise_equal(name):
    from minidl import models
    from minidl.functional.fused import BatchNormReLU
    md.manual_seed(0)
    model, size = {
        "cifar_resnet20": lambda: (models.cifar_resnet(20), 16),
        "resnet18": lambda: (models.resnet18(num_classes=10), 32),
        "resnet50": lambda: (models.resnet50(num_classes=10), 32),
        "googlenet": lambda: (models.googlenet(num_classes=10, aux_logits=False), 32),
        "densenet121": lambda: (models.densenet121(num_classes=10, small_inputs=True), 8),
    }[name]()
    model.train()
    assert BatchNormReLU in _node_kinds(model(md.tensor(_data((2, 3, size, size), dtype=np.float32))))
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    x = md.tensor(_data((2, 3, size, size), 0, np.float32))
    y = md.tensor(np.array([1, 3]))
    fused = _step_results(model, x, y)
    model.load_state_dict({k: md.tensor(v) for k, v in state.items()})
    handles = _unfuse(model)
    unfused = _step_results(model, x, y)
    for h in handles:
        h.remove()
    assert len(fused) == len(unfused)
    for a, b in zip(fused, unfused):
        np.testing.assert_array_equal(a, b)


def _node_kinds(out):
    """The Function classes of the graph behind ``out``."""
    kinds, seen, stack = set(), set(), [out.creator]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        kinds.add(type(fn))
        stack += [p[0] for p in fn.parents if isinstance(p, tuple)]
    return kinds


def test_zoo_uses_the_fused_nodes_in_training_only():
    from minidl import models
    from minidl.functional.fused import AddReLU, BatchNormReLU
    md.manual_seed(0)
    model = models.cifar_resnet(20)
    x = md.tensor(_data((2, 3, 8, 8), 0, np.float32))
    assert {AddReLU, BatchNormReLU} <= _node_kinds(model(x))
    handles = _unfuse(model)     # a hook on a module the fused call would skip: unfused
    assert not {AddReLU, BatchNormReLU} & _node_kinds(model(x))
    for h in handles:
        h.remove()
    model.eval()        # eval mode: batch norm with running statistics, unfused
    kinds = _node_kinds(model(x))
    assert BatchNormReLU not in kinds and AddReLU in kinds


@pytest.mark.parametrize("variant", ["momentum_none", "no_running_stats", "plain"])
def test_block_variants_fused_equal_unfused(variant):
    """BatchNorm2d options the fused path mirrors (cumulative averages, no running stats)
    and the plain (shortcut-free) blocks."""
    from minidl import models
    from minidl.functional.fused import BatchNormReLU
    from minidl.nn import BatchNorm2d
    md.manual_seed(0)
    blocks = [models.resnet.BasicBlock(4, 8, stride=2, shortcut=variant != "plain"),
              models.resnet.cifar_basic_block(4, 8, stride=2, plain=variant == "plain")]
    x = md.tensor(_data((3, 4, 6, 6), 0, np.float32))
    for block in blocks:
        for m in block.modules():
            if isinstance(m, BatchNorm2d):
                if variant == "momentum_none":
                    m.momentum = None
                if variant == "no_running_stats":
                    m.track_running_stats = False
                    m.running_mean = m.running_var = m.num_batches_tracked = None
        state = {k: v.numpy().copy() for k, v in block.state_dict().items()}
        results = []
        for fused in (True, False):
            block.load_state_dict({k: md.tensor(v) for k, v in state.items()})
            handles = [] if fused else _unfuse(block)
            out = []
            for _ in range(2):      # two steps: the cumulative average changes its weight
                block.zero_grad()
                y = block(x)
                assert (BatchNormReLU in _node_kinds(y)) == fused
                (y * y).sum().backward()
                out += [y.numpy()] + [p.grad.numpy() for p in block.parameters()]
            out += [b.numpy() for b in block.buffers()]
            results.append(out)
            for h in handles:
                h.remove()
        assert len(results[0]) == len(results[1])
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
