"""The engine (minidl/autograd.py): graph construction and ordering, freeing, retain_graph,
accumulation, hooks, grad modes, anomaly mode, md.grad, higher-order derivatives, the
Function contract, and the errors users get."""
from __future__ import annotations

import gc
import sys
import threading
import warnings
import weakref

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl.autograd import Function, Tensor
from minidl.backend import get_array_module


def leaf(a, device, requires_grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=requires_grad)


def functions_of(t):
    """Every Function of the graph behind ``t`` (iteratively, like the engine)."""
    seen, stack, out = set(), [t.creator], []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        out.append(fn)
        stack.extend(p[0] for p in fn.__dict__.get("parents", ()) if isinstance(p, tuple))
    return out


class Counting(Function):
    """Identity that counts its backward calls and records the gradients it received."""

    def __init__(self, log):
        self.log = log

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        self.log.append(gy.numpy().copy())
        return gy


# ---- graph construction and ordering ------------------------------------------------------

def test_graph_records_creators_and_generations(device):
    x = leaf([1.0, 2.0], device)
    y = x * 2
    z = F.exp(y) + y
    assert x.is_leaf and x.creator is None and x.generation == 0
    assert type(y.creator).__name__ == "Mul" and y.generation == 1
    assert type(z.creator).__name__ == "Add" and z.generation == 3
    assert z.requires_grad and not md.tensor([1.0]).requires_grad
    c = md.tensor([3.0], device=device) * 2  # no input requires grad: no graph
    assert c.creator is None and not c.requires_grad


def test_diamond_runs_each_backward_once_with_the_summed_gradient(device):
    # x -> a (counted) -> [short branch a*3, long branch through 20 ops] -> sum.
    # The heap order by generation must wait for the long branch before running `a`'s node.
    log = []
    x = leaf([1.0, 2.0], device)
    a = Counting(log)(x)
    long = a
    for _ in range(20):
        long = long * 1.0
    (a * 3 + long).sum().backward()
    assert len(log) == 1
    np.testing.assert_allclose(log[0], [4.0, 4.0])
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])


def test_deep_chain_backpropagates_without_recursion(device):
    assert sys.getrecursionlimit() < 10_000  # the chain is deeper than Python's stack allows
    x = leaf([0.5], device)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-9)
    # the same depth through a create_graph second derivative
    z = x
    for _ in range(10_000):
        z = F.tanh(z) * 1.0
    (g,) = md.grad(z.sum(), x, create_graph=True)
    (h,) = md.grad(g.sum(), x)
    assert np.isfinite(h.numpy()).all()


# ---- freeing the graph ------------------------------------------------------------------

def test_graph_functions_are_garbage_after_backward(device):
    x = leaf(np.random.default_rng(0).standard_normal((3, 4)), device)
    w = leaf(np.random.default_rng(1).standard_normal((4, 2)), device)
    h = F.tanh(x @ w)
    loss = (F.softmax(h) * F.sigmoid(h)).sum() * 2
    refs = [weakref.ref(fn) for fn in functions_of(loss)]
    try:
        saved = weakref.ref(h.data)  # an activation that Mul/Softmax keep for backward
    except TypeError:  # an array type without weak references: check the Functions only
        saved = lambda: None  # noqa: E731
    assert len(refs) >= 6
    del h
    gc.collect()
    gc.disable()  # freed by reference counting alone: no cycles in the graph
    try:
        assert saved() is not None or device != "cpu"
        loss.backward()
        # only the root's node survives (loss.creator), emptied of everything it saved
        alive = [r() for r in refs if r() is not None]
        assert alive == [loss.creator]
        assert set(vars(loss.creator)) == {"generation"}
        assert saved() is None
        del loss, alive
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_retain_graph_keeps_functions_until_the_output_goes(device):
    x = leaf([1.0, 2.0], device)
    y = (F.exp(x) * x).sum()
    refs = [weakref.ref(fn) for fn in functions_of(y)]
    y.backward(retain_graph=True)
    assert all(r() is not None for r in refs)
    y.backward()  # retained: a second pass works and accumulates
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * (e + e * [1.0, 2.0]))
    del y
    assert all(r() is None for r in refs)


def test_second_backward_through_freed_graph_raises(device):
    x = leaf([1.0, 2.0], device)
    y = (F.tanh(x) * 3).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    # also when only a shared part of the graph was freed by another loss
    h = F.tanh(x)
    l1, l2 = h.sum(), (h * 2).sum()
    l1.backward()
    with pytest.raises(RuntimeError, match="Tanh.*retain_graph"):
        l2.backward()


# ---- accumulation -----------------------------------------------------------------------

def test_gradients_accumulate_into_leaves_across_backward_calls(device):
    x = leaf([1.0, -2.0], device)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -4.0])
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, -1.0])
    F.exp(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, -1.0] + np.exp([1.0, -2.0]))
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_leaf_used_twice_and_leaf_grads_own_their_memory(device):
    a, b = leaf([1.0, 2.0], device), leaf([3.0, 4.0], device)
    (a * a + a).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 5.0])
    a.grad = None
    (a + b).sum().backward()  # both leaves get the same upstream (broadcast) array
    a.grad.data *= 10  # in-place updates (gradient clipping) must not leak into b
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(a.grad.numpy(), [10.0, 10.0])


def test_only_requested_gradients_are_computed(device):
    seen = []

    class Probe(Function):
        def forward(self, a, b):
            seen.append(self.needs_input_grad)
            return a * b

        def backward(self, gy):
            return (gy if self.needs_input_grad[0] else None,
                    gy if self.needs_input_grad[1] else None)

    x, c = leaf([1.0], device), leaf([2.0], device, requires_grad=False)
    Probe()(x, c).sum().backward()
    Probe()(c, c)
    with md.no_grad():
        Probe()(x, x)
    assert seen == [(True, False), (False, False), (False, False)]
    assert c.grad is None and x.grad is not None


# ---- hooks and retain_grad --------------------------------------------------------------

def test_leaf_hook_sees_the_total_gradient_once_and_can_replace_it(device):
    x = leaf([1.0, 2.0], device)
    calls = []

    def hook(g):
        calls.append(g.numpy().copy())
        return g * 10

    handle = x.register_hook(hook)
    (x * x + x * 3).sum().backward()  # x is used three times
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], [5.0, 7.0])
    np.testing.assert_allclose(x.grad.numpy(), [50.0, 70.0])
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])
    assert len(calls) == 1


def test_non_leaf_hook_modifies_what_flows_upstream(device):
    x = leaf([1.0, 2.0], device)
    y = x * 2
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))  # observing only
    y.register_hook(lambda g: g * 0.5)                       # then halving
    (y * y).sum().backward()
    np.testing.assert_allclose(seen[0], [4.0, 8.0])           # d(y^2)/dy = 2y
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])   # halved, then * 2
    assert y.grad is None  # non-leaves do not keep .grad unless asked
    with pytest.raises(RuntimeError, match="does not require grad"):
        md.tensor([1.0]).register_hook(lambda g: g)


def test_retain_grad(device):
    x = leaf([1.0, -2.0, 3.0], device)
    y = x * 2
    y.retain_grad()
    y.retain_grad()  # idempotent: the gradient is not counted twice
    z = y * y
    z.retain_grad()
    x.retain_grad()  # leaves always keep .grad; a no-op
    z.sum().backward(retain_graph=True)
    np.testing.assert_allclose(y.grad.numpy(), [4.0, -8.0, 12.0])
    np.testing.assert_allclose(z.grad.numpy(), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [8.0, -16.0, 24.0])
    z.sum().backward()  # like leaves, retained gradients accumulate
    np.testing.assert_allclose(y.grad.numpy(), [8.0, -16.0, 24.0])
    assert not y.grad.requires_grad


# ---- grad modes -------------------------------------------------------------------------

def test_no_grad_and_enable_grad_nest(device):
    x = leaf([1.0], device)
    assert md.is_grad_enabled()
    with md.no_grad():
        assert not md.is_grad_enabled()
        y = x * 2
        with md.enable_grad():
            assert md.is_grad_enabled()
            z = x * 2
            with md.no_grad():
                assert not (x * 2).requires_grad
            assert md.is_grad_enabled()
        assert not md.is_grad_enabled()
    assert md.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad and z.creator is not None
    with md.set_grad_enabled(False):
        assert not (x * 2).requires_grad


def test_no_grad_as_decorator_and_restores_after_exceptions(device):
    x = leaf([1.0], device)

    @md.no_grad()
    def infer(t):
        return t * 2, md.is_grad_enabled()

    y, enabled = infer(x)
    assert not enabled and not y.requires_grad
    assert md.is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with md.no_grad():
            1 / 0
    assert md.is_grad_enabled()


def test_no_grad_and_enable_grad_decorate_without_parentheses(device):
    """torch 2 accepts ``@torch.no_grad`` as well as ``@torch.no_grad()``; so does minidl."""
    x = leaf([1.0], device)

    @md.no_grad
    def infer(t):
        """Docstring kept."""
        return t * 2, md.is_grad_enabled()

    @md.enable_grad
    def train_step(t):
        return t * 2

    y, enabled = infer(x)
    assert not enabled and not y.requires_grad and infer.__doc__ == "Docstring kept."
    with md.no_grad():
        assert train_step(x).requires_grad
    assert md.is_grad_enabled()


def test_no_grad_is_thread_local():
    entered, checked = threading.Event(), threading.Event()
    results = {}

    def worker():
        with md.no_grad():
            entered.set()
            checked.wait(5)
            results["worker"] = md.is_grad_enabled()

    t = threading.Thread(target=worker)
    t.start()
    assert entered.wait(5)
    # the other thread is inside no_grad right now; this one still records graphs
    results["main"] = md.is_grad_enabled()
    results["main_graph"] = (md.tensor([1.0], requires_grad=True) * 2).requires_grad
    checked.set()
    t.join(5)
    assert results == {"worker": False, "main": True, "main_graph": True}

    def other():  # and a fresh thread starts with recording on, even if this one has it off
        results["fresh"] = md.is_grad_enabled()

    with md.no_grad():
        t = threading.Thread(target=other)
        t.start()
        t.join(5)
    assert results["fresh"] is True


# ---- anomaly mode -----------------------------------------------------------------------

def test_detect_anomaly_names_the_forward_function(device):
    x = leaf([-1.0, 2.0], device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy's "invalid value in log"
        y = F.exp(F.log(x) * 2)  # without anomaly mode the NaN just flows on
        assert np.isnan(y.numpy()[0])
        with md.detect_anomaly():
            with pytest.raises(FloatingPointError, match=r"Log\.forward produced NaN"):
                F.exp(F.log(x) * 2)
            with pytest.raises(FloatingPointError, match=r"Div\.forward produced Inf"):
                x / md.tensor([0.0, 1.0], device=device)


def test_detect_anomaly_names_the_backward_function(device):
    x = leaf([0.0, 4.0], device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divide by zero
        with md.detect_anomaly():
            y = (F.sqrt(x) * 3).sum()  # forward is finite: sqrt(0) = 0
            with pytest.raises(FloatingPointError, match=r"Sqrt\.backward produced Inf"):
                y.backward()
    assert not md.autograd._anomaly.get()  # the mode ends with the block


# ---- md.grad and higher-order derivatives -------------------------------------------------

def test_grad_wrt_leaves_and_non_leaves(device):
    x = leaf([1.0, 2.0], device)
    y = x * 3
    z = (y * y).sum()
    gx, gy = md.grad(z, [x, y], retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), 18 * np.array([1.0, 2.0]))
    np.testing.assert_allclose(gy.numpy(), [6.0, 12.0])
    assert x.grad is None  # md.grad returns gradients, it does not accumulate
    (only_y,) = md.grad(z, y)
    np.testing.assert_allclose(only_y.numpy(), [6.0, 12.0])
    unused = leaf([5.0], device)
    w = (x * 2).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        md.grad(w, [x, unused], retain_graph=True)
    assert md.grad(w, [x, unused], allow_unused=True)[1] is None
    v = x * 2
    (gv,) = md.grad(v, x, grad_outputs=md.tensor([1.0, 10.0], device=device))
    np.testing.assert_allclose(gv.numpy(), [2.0, 20.0])


def test_higher_order_derivatives_of_cube(device):
    x = leaf([-1.5, 0.5, 2.0], device)
    y = (x ** 3).sum()
    (g1,) = md.grad(y, x, create_graph=True)
    (g2,) = md.grad(g1.sum(), x, create_graph=True)
    (g3,) = md.grad(g2.sum(), x)
    xs = np.array([-1.5, 0.5, 2.0])
    np.testing.assert_allclose(g1.numpy(), 3 * xs ** 2)
    np.testing.assert_allclose(g2.numpy(), 6 * xs)
    np.testing.assert_allclose(g3.numpy(), [6.0, 6.0, 6.0])


def test_backward_create_graph_then_differentiate_grad(device):
    x = leaf([0.3, -0.7], device)
    F.tanh(x).sum().backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.creator is not None
    first = x.grad
    x.grad = None
    first.sum().backward()
    t = np.tanh([0.3, -0.7])
    np.testing.assert_allclose(x.grad.numpy(), -2 * t * (1 - t ** 2))


def test_hessian_vector_product_of_a_small_network(device):
    rng = np.random.default_rng(0)
    w = leaf(rng.standard_normal((3, 2)), device)
    x = md.tensor(rng.standard_normal((4, 3)), device=device)
    loss_fn = lambda w_: F.cross_entropy(F.tanh(x @ w_), md.tensor([0, 1, 1, 0], device=device))  # noqa: E731
    assert md.gradgradcheck(loss_fn, w)


# ---- the Function contract ----------------------------------------------------------------

def test_custom_function_contract(device):
    class ScaleShift(Function):
        """y = x * s + 1, written against the documented contract."""

        keep_inputs = (0,)
        keep_output = True

        def forward(self, x, s):
            self.s = s  # a plain array saved for backward
            return x * s + 1

        def backward(self, gy):
            x = self.inputs[0]
            assert self.inputs[1] is None          # not listed in keep_inputs
            assert self.output().shape == self.input_shapes[0]
            gx = gy * Tensor(self.s) if self.needs_input_grad[0] else None
            gs = (gy * x).sum() if self.needs_input_grad[1] else None
            return gx, gs

    x = leaf([1.0, 2.0], device)
    y = ScaleShift()(x, 2.0)  # a Python scalar becomes an array of x's dtype, a constant
    assert y.dtype == np.float64
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    assert md.gradcheck(lambda a, b: ScaleShift()(a, b), x, leaf(3.0, device))


class TorchExp(Function):
    """exp written as in a PyTorch tutorial: ctx, save_for_backward of the output, apply."""

    @staticmethod
    def forward(ctx, x):
        y = F.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * y          # minidl ops: differentiable again


class TorchScaledMul(Function):
    """a * b * scale with a non-tensor argument, needs_input_grad and a non-differentiable
    second output (the sign pattern)."""

    @staticmethod
    def forward(ctx, a, scale, b):
        ctx.save_for_backward(a, b)
        ctx.scale = scale
        ctx.seen_needs = ctx.needs_input_grad
        out = a * b * scale
        sign = md.tensor((out.numpy() > 0).astype(out.numpy().dtype), device=out.device)
        ctx.mark_non_differentiable(sign)
        return out, sign

    @staticmethod
    def backward(ctx, grad_out, grad_sign):
        a, b = ctx.saved_tensors
        ga = grad_out * b * ctx.scale if ctx.needs_input_grad[0] else None
        gb = grad_out * a * ctx.scale if ctx.needs_input_grad[2] else None
        return ga, None, gb


def test_torch_style_function_runs_on_the_engine(device):
    x = leaf([-1.0, 0.5, 2.0], device)
    y = TorchExp.apply(x)
    assert isinstance(y.creator, TorchExp) and y.requires_grad
    np.testing.assert_allclose(y.numpy(), np.exp(x.numpy()))
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp(x.numpy()))
    assert md.gradcheck(TorchExp.apply, x)
    assert md.gradgradcheck(TorchExp.apply, x)      # create_graph through the saved output
    (d1,) = md.grad(TorchExp.apply(x).sum(), x, create_graph=True)
    (d2,) = md.grad(d1.sum(), x)
    np.testing.assert_allclose(d2.numpy(), np.exp(x.numpy()))
    with md.no_grad():
        z = TorchExp.apply(x)
    assert z.creator is None and not z.requires_grad


def test_torch_style_function_arguments_and_outputs(device):
    a, b = leaf([1.0, -2.0], device), leaf([3.0, 4.0], device, requires_grad=False)
    out, sign = TorchScaledMul.apply(a, 0.5, b)
    assert out.creator.seen_needs == (True, False, False)
    assert not sign.requires_grad and sign.creator is None
    np.testing.assert_array_equal(sign.numpy(), [1.0, 0.0])
    (out * out).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * out.numpy() * b.numpy() * 0.5)
    b.requires_grad_()
    assert md.gradcheck(lambda p, q: TorchScaledMul.apply(p, 0.5, q)[0], a, b)
    assert md.gradgradcheck(lambda p, q: TorchScaledMul.apply(p, 0.5, q)[0], a, b)
    assert md.gradcheck(lambda p, q: TorchScaledMul.apply(p, 0.5, q)[0] ** 2, a, b)


def test_torch_style_function_errors(device):
    x = leaf([1.0, 2.0], device)
    with pytest.raises(TypeError, match=r"TorchExp has a @staticmethod forward\(ctx, \.\.\.\): "
                                        r"call it as TorchExp\.apply\(\.\.\.\)"):
        TorchExp()(x)
    y = TorchExp.apply(x * 1)
    y.mul_(2.0)                     # the output TorchExp saved is changed in place
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: \[TorchExp\] "
                                           r"saved tensor of shape \(2,\) is at version 1; "
                                           r"expected version 0"):
        y.sum().backward()
    h = x * 1
    out, _ = TorchScaledMul.apply(h, 2.0, x)
    h += 1.0                        # an input it saved
    with pytest.raises(RuntimeError, match=r"\[TorchScaledMul\] saved tensor of shape \(2,\) "
                                           r"is at version 1; expected version 0"):
        out.sum().backward()

    class TwoGrads(Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(RuntimeError, match=r"TwoGrads\.backward returned 1 gradients for 2 "
                                           r"arguments of forward \(return None"):
        TwoGrads.apply(x, 3).sum().backward()
    z = TorchExp.apply(x)
    z.sum().backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        z.sum().backward()


def test_minidl_style_function_also_has_apply(device):
    a, b = leaf([1.0, 2.0], device), leaf([3.0, 5.0], device)
    from minidl.functional.elementwise import Mul
    np.testing.assert_allclose(Mul.apply(a, b).numpy(), [3.0, 10.0])


# ---- post-accumulate-grad hooks -------------------------------------------------------------

def test_post_accumulate_grad_hook_fires_once_with_the_final_grad_during_backward(device):
    log = []
    w1, w2 = leaf([1.0, 2.0], device), leaf([3.0, -1.0], device)
    x = leaf([0.5, 0.25], device, requires_grad=False)

    class Mark(Function):
        """Identity that logs when its backward runs."""

        def __init__(self, name):
            self.name = name

        def forward(self, a):
            return a.copy()

        def backward(self, gy):
            log.append(self.name)
            return gy

    h = Mark("first layer")(x * w1)         # w1 is used twice: here ...
    y = Mark("second layer")(h * w2).sum() + (w1 * w1).sum()   # ... and here, run last
    handles = [p.register_post_accumulate_grad_hook(
        lambda p, name=name: log.append((name, p.grad.numpy().copy())))
        for name, p in (("w1", w1), ("w2", w2))]
    y.backward()
    names = [e if isinstance(e, str) else e[0] for e in log]
    assert names.count("w1") == 1 and names.count("w2") == 1
    assert names.index("w2") < names.index("first layer") < names.index("w1")
    final = {e[0]: e[1] for e in log if isinstance(e, tuple)}
    np.testing.assert_allclose(final["w1"], w1.grad.numpy())
    np.testing.assert_allclose(final["w2"], w2.grad.numpy())
    np.testing.assert_allclose(w1.grad.numpy(), x.numpy() * w2.numpy() + 2 * w1.numpy())
    log.clear()
    (w1 * w2).sum().backward()               # accumulates: the hook sees the sum
    assert [e[0] for e in log] == ["w1", "w2"] or [e[0] for e in log] == ["w2", "w1"]
    np.testing.assert_allclose({e[0]: e[1] for e in log}["w1"], w1.grad.numpy())
    for handle in handles:
        handle.remove()
    log.clear()
    (w1 * w2).sum().backward()
    assert log == []


def test_post_accumulate_grad_hook_edge_cases(device):
    seen = []
    w = leaf([1.0, 2.0], device)
    handle = w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))
    w.backward(md.tensor([1.0, 1.0], dtype="float64", device=device))   # the root is the leaf
    np.testing.assert_allclose(seen.pop(), [1.0, 1.0])
    md.grad((w * w).sum(), w)                # grad() accumulates nothing: no hook
    assert seen == []
    (w * 2).sum().backward(create_graph=True)
    np.testing.assert_allclose(seen.pop(), [3.0, 3.0])
    handle.remove()
    with pytest.raises(RuntimeError, match=r"only a leaf tensor that requires grad"):
        (w * 2).register_post_accumulate_grad_hook(print)
    hooked = md.autograd._post_hooked
    assert id(w) not in hooked               # its only hook was removed
    dropped = leaf([1.0], device)
    first = dropped.register_post_accumulate_grad_hook(print)
    dropped.register_post_accumulate_grad_hook(print)
    first.remove()
    key = id(dropped)
    assert hooked.get(key) is dropped
    del dropped                              # never removed: forgotten with the tensor
    gc.collect()
    assert key not in hooked


def test_engine_casts_gradients_and_checks_shapes(device):
    class Float64Grad(Function):
        def forward(self, x):
            return x * 1

        def backward(self, gy):
            return gy.double()

    class BadShape(Function):
        def forward(self, x):
            return x * 1

        def backward(self, gy):
            return gy.sum()

    class TooMany(Function):
        def forward(self, x):
            return x * 1

        def backward(self, gy):
            return gy, gy

    x = md.tensor(np.ones(3, np.float32), device=device, requires_grad=True)
    Float64Grad()(x).sum().backward()
    assert x.grad.dtype == np.float32
    with pytest.raises(RuntimeError, match=r"BadShape\.backward returned a gradient of shape "
                                           r"\(\) for an input of shape \(3,\)"):
        BadShape()(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"TooMany\.backward returned 2 gradients for 1"):
        TooMany()(x).sum().backward()


# ---- errors users get -------------------------------------------------------------------

def test_backward_errors(device):
    x = leaf([1.0, 2.0], device)
    with pytest.raises(RuntimeError, match=r"one-element.*\(2,\).*grad="):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"backward: grad has shape \(3,\).*\(2,\)"):
        (x * 2).backward(md.tensor([1.0, 1.0, 1.0], device=device))
    with pytest.raises(RuntimeError, match="does not require grad"):
        md.tensor([1.0], device=device).backward()
    with md.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="no_grad"):
        y.backward()
    (x * 2).backward(np.array([1.0, 3.0]) if device == "cpu" else md.tensor([1.0, 3.0],
                                                                           device=device))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 6.0])
    with pytest.raises(RuntimeError, match="grad_outputs"):
        md.grad(x * 2, x)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_tensors_cannot_require_grad(device, dtype):
    with pytest.raises(TypeError, match=f"floating-point.*{np.dtype(dtype)}"):
        md.tensor(np.zeros(3, dtype), device=device, requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        md.zeros(3, dtype=dtype, device=device, requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        md.tensor(np.zeros(3, dtype), device=device).requires_grad_()


def test_mismatched_shapes_name_both(device):
    a, b = leaf(np.ones((2, 3)), device), leaf(np.ones((4, 5)), device)
    for op in (lambda: a + b, lambda: a - b, lambda: a * b, lambda: a / b, lambda: a ** b,
               lambda: F.maximum(a, b)):
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
            op()


def test_item_and_repr(device):
    x = leaf([[2.5]], device)
    assert x.item() == 2.5
    with pytest.raises(ValueError, match=r"item: tensor has 2 elements \(shape \(2,\)\)"):
        leaf([1.0, 2.0], device).item()
    assert "requires_grad=True" in repr(x) and "grad_fn=Mul" in repr(x * 2)


@pytest.mark.gpu
def test_mixing_devices_names_both():
    a = md.tensor([1.0, 2.0], device="cpu", requires_grad=True)
    b = md.tensor([1.0, 2.0], device="cuda")
    for op in (lambda: a + b, lambda: b * a, lambda: a @ b, lambda: md.cat([a, b])):
        with pytest.raises(ValueError, match=r"'cpu'.*'cuda'|'cuda'.*'cpu'"):
            op()
    # a CuPy array as a constant operand of a CPU tensor is refused too
    with pytest.raises(ValueError, match="different devices"):
        a + b.data


@pytest.mark.gpu
def test_backward_across_devices():
    x = md.tensor([1.0, 2.0], device="cpu", requires_grad=True)
    y = (x.to("cuda") * 3).sum()
    assert y.device == "cuda"
    y.backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])
    assert get_array_module(y.data) is not np
    assert isinstance(y, Tensor)


# The engine alone: minidl/autograd.py (and gradcheck.py on it) with only minidl/backend.py loaded,
# under a bare 'minidl' package whose __init__ never runs, so that nothing attaches Tensor's
# operators and nothing of minidl.functional is there to lean on.
_BARE_PACKAGE = r"""
import sys, types
import numpy as np

package = types.ModuleType("minidl")
package.__path__ = [sys.argv[1]]
sys.modules["minidl"] = package
"""

_ENGINE_ALONE = _BARE_PACKAGE + r"""
import minidl.backend
import minidl.autograd as ag

assert not hasattr(ag.Tensor, "__add__"), "operators were installed: the test proves nothing"


class Mul(ag.Function):
    keep_inputs = (0, 1)

    def forward(self, a, b):
        return a * b

    def backward(self, gy):  # written with Functions, not operators
        a, b = self.inputs
        return Mul()(gy, b), Mul()(gy, a)


x = ag.tensor([-1.5, 0.5, 2.0], dtype=np.float32, requires_grad=True)
x64 = ag.ToDevice("cpu")(ag.Cast(np.float64)(x))       # the engine's own cast and move
y = Mul()(x64, Mul()(x64, x64))                        # x^3, x used three times


def ones_like(t):
    return ag.tensor(np.ones(t.shape, t.dtype))


ones = ones_like(y)
(d1,) = ag.grad(y, x, grad_outputs=ones, create_graph=True)
assert d1.dtype == np.float32 and d1.requires_grad
assert np.allclose(d1.numpy(), 3 * x.numpy() ** 2), d1
d1.backward(ones_like(d1))                          # create_graph=False, into .grad
assert np.allclose(x.grad.numpy(), 6 * x.numpy()), x.grad

y = Mul()(x, x)
y.backward(ones_like(y), create_graph=True)         # adds 2x to the 6x already in .grad
assert type(x.grad.creator).__name__ == "Accumulate", x.grad.creator
assert np.allclose(x.grad.numpy(), 8 * x.numpy()), x.grad

import minidl.gradcheck as gc                          # the checks need only the engine too


def cube(a):
    return Mul()(a, Mul()(a, a))


assert gc.gradcheck(cube, x) and gc.gradgradcheck(cube, x)

loaded = sorted(m for m in sys.modules if m == "minidl" or m.startswith("minidl."))
assert "minidl.functional" not in sys.modules, loaded
assert set(loaded) <= {"minidl", "minidl.backend", "minidl.autograd", "minidl.gradcheck"}, loaded
print("engine alone: ok")
"""


_OPS_INSTALL_EXPLICITLY = _BARE_PACKAGE + r"""
import minidl.functional
import minidl.functional.tensor_methods as methods
from minidl.autograd import Tensor

assert not hasattr(Tensor, "__add__"), "importing minidl.functional installed the operators"
methods.install_tensor_methods()
x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
(x * x + 1).sum().backward()
assert np.allclose(x.grad.numpy(), [2.0, 4.0]), x.grad
print("explicit install: ok")
"""


def _run_on_bare_package(script: str) -> str:
    import pathlib
    import subprocess

    package_dir = pathlib.Path(md.__file__).parent
    done = subprocess.run([sys.executable, "-c", script, str(package_dir)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_engine_and_gradcheck_run_a_create_graph_backward_on_their_own():
    assert "engine alone: ok" in _run_on_bare_package(_ENGINE_ALONE)


def test_operators_are_installed_by_an_explicit_call_not_by_an_import():
    assert "explicit install: ok" in _run_on_bare_package(_OPS_INSTALL_EXPLICITLY)


def test_leaf_grad_never_shares_memory_with_the_callers_gradient(device):
    """y = a + 1 hands the caller's gradient straight to a: a.grad must be a copy, or the
    next backward's in-place accumulation would write into the caller's tensor."""
    a = md.tensor([1.0, 2.0], device=device, requires_grad=True)
    g = md.tensor([1.0, 1.0], device=device)
    (a + 1.0).backward(g)
    (a + 1.0).backward(md.tensor([5.0, 5.0], device=device))
    np.testing.assert_array_equal(g.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(a.grad.numpy(), [6.0, 6.0])
    leaf = md.tensor([3.0], device=device, requires_grad=True)
    seed = md.tensor([2.0], device=device)
    leaf.backward(seed)                                   # the root is the leaf itself
    leaf.grad.data *= 10
    np.testing.assert_array_equal(seed.numpy(), [2.0])


def test_queue_callback_runs_once_backward_has_stored_every_gradient():
    from minidl.autograd import in_backward, queue_callback

    w1 = md.tensor([1.0, 2.0], requires_grad=True)
    w2 = md.tensor([3.0, 4.0], requires_grad=True)
    seen = []

    def hook(p):
        assert in_backward()
        queue_callback(lambda: seen.append((w1.grad.numpy().tolist(), w2.grad.numpy().tolist())))

    w2.register_post_accumulate_grad_hook(hook)
    (w1 * w2).sum().backward()
    assert seen == [([3.0, 4.0], [1.0, 2.0])] and not in_backward()
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        queue_callback(lambda: None)
