"""In-place ops and version counters (minidl/functional/inplace.py, the engine's checks):
identity kept, torch's leaf rules, x[i] = v gradients against NumPy, views writing through,
the manual SGD step, and backward refusing tensors modified after they were saved."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_checks import fixture_ok, seeds

import minidl as md
import minidl.functional as F
from minidl import nn

MODIFIED = (r"one of the variables needed for gradient computation has been modified by an "
            r"inplace operation: \[{fn}\] saved tensor of shape \({shape}\) is at version "
            r"{now}; expected version {saved} instead\. Hint: ")


def t64(a, device, requires_grad=False):
    return md.tensor(np.asarray(a, dtype=np.float64), device=device,
                     requires_grad=requires_grad)


def address(a):
    """Where an array's memory starts (NumPy or CuPy)."""
    return a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a.data.ptr


def modified(fn, shape, now, saved):
    return MODIFIED.format(fn=fn, shape=shape, now=now, saved=saved)


# ---- the manual SGD step ------------------------------------------------------------------

def test_manual_sgd_updates_the_very_parameters_and_trains(device):
    rng = np.random.default_rng(0)
    x = md.tensor(rng.normal(size=(32, 3)).astype(np.float32), device=device)
    y = md.tensor((x.numpy() @ np.array([[1.0], [-2.0], [0.5]], np.float32)), device=device)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).to(device)
    params = list(model.parameters())
    identity = [(id(p), address(p.data)) for p in params]
    before = [p.numpy().copy() for p in params]
    losses = []
    for _ in range(30):
        loss = F.mse_loss(model(x), y)
        losses.append(loss.item())
        for p in model.parameters():
            p.grad = None
        loss.backward()
        with md.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    assert [(id(p), address(p.data)) for p in model.parameters()] == identity
    assert all(p.is_leaf and p.requires_grad for p in model.parameters())
    assert all(not np.allclose(p.numpy(), b) for p, b in zip(params, before))
    assert losses[-1] < 0.5 * losses[0]


def test_in_place_ops_keep_the_tensor_and_its_memory(device):
    p = md.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3), device=device)
    ident, where = id(p), address(p.data)
    ref = np.arange(6.0).reshape(2, 3)
    steps = [
        (lambda t: t.__iadd__(1.0), lambda r: r + 1),
        (lambda t: t.__isub__(md.tensor([1.0, 2.0, 3.0], device=device)),
         lambda r: r - [1.0, 2.0, 3.0]),
        (lambda t: t.__imul__(2.0), lambda r: r * 2),
        (lambda t: t.__itruediv__(4.0), lambda r: r / 4),
        (lambda t: t.add_(md.ones(2, 3, device=device), alpha=3), lambda r: r + 3),
        (lambda t: t.sub_(1.5), lambda r: r - 1.5),
        (lambda t: t.mul_(md.tensor([[2.0], [-1.0]], device=device)),
         lambda r: r * [[2.0], [-1.0]]),
        (lambda t: t.div_(2.0), lambda r: r / 2),
        (lambda t: t.clamp_(-2.0, 3.0), lambda r: np.clip(r, -2.0, 3.0)),
        (lambda t: t.__imatmul__(md.tensor(np.eye(3)[::-1].copy(), device=device)),
         lambda r: r @ np.eye(3)[::-1]),
        (lambda t: t.fill_(7.0), lambda r: np.full_like(r, 7.0)),
        (lambda t: t.copy_(md.tensor([1.0, 2.0, 3.0], dtype="float64", device=device)),
         lambda r: np.broadcast_to([1.0, 2.0, 3.0], r.shape).astype(r.dtype)),
        (lambda t: t.zero_(), np.zeros_like),
    ]
    for version, (op, reference) in enumerate(steps, start=1):
        out = op(p)
        ref = reference(ref)
        assert out is p and id(p) == ident and address(p.data) == where
        assert p.dtype == np.float32 and p._version == version
        np.testing.assert_allclose(p.numpy(), ref, rtol=1e-6)


def test_setitem_without_grad_is_numpy_assignment(device):
    ref = np.zeros((3, 4), np.float32)
    x = md.tensor(ref, device=device)
    where = address(x.data)
    x[0] = 1.0
    ref[0] = 1.0
    x[:, 1] = md.tensor([5.0, 6.0, 7.0], device=device)
    ref[:, 1] = [5.0, 6.0, 7.0]
    x[[2, 0], [3, 3]] = md.tensor([8.0, 9.0], device=device)
    ref[[2, 0], [3, 3]] = [8.0, 9.0]
    x[x > 6] = -1.0
    ref[ref > 6] = -1.0
    x[md.tensor([1], device=device)] = md.tensor(np.arange(4.0), device=device)
    ref[[1]] = np.arange(4.0)
    np.testing.assert_array_equal(x.numpy(), ref)
    assert address(x.data) == where and x._version == 5


# ---- torch's rules for leaves -------------------------------------------------------------

def test_in_place_on_a_leaf_that_requires_grad_raises_outside_no_grad(device):
    w = t64([1.0, 2.0], device, requires_grad=True)
    for op in (lambda: w.__iadd__(1.0), lambda: w.mul_(2.0), lambda: w.zero_(),
               lambda: w.__setitem__(0, 3.0), lambda: w.copy_(w * 2)):
        with pytest.raises(RuntimeError, match=r"a leaf Variable that requires grad is being "
                                               r"used in an in-place operation\..*md\.no_grad"):
            op()
    with pytest.raises(RuntimeError, match=r"a view of a leaf Variable that requires grad"):
        w[0].add_(1.0)
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert w._version == 0 and w.is_leaf
    with md.no_grad():
        w += 1.0
        w[0].mul_(10.0)  # a view of the leaf, under no_grad: writes through
    np.testing.assert_array_equal(w.numpy(), [20.0, 3.0])
    assert w.is_leaf and w.requires_grad and w.creator is None and w._version == 2


def test_in_place_on_a_non_leaf_records_it(device):
    a = t64([1.0, 2.0, 3.0], device, requires_grad=True)
    w = t64([0.5, -1.0, 2.0], device, requires_grad=True)
    b = a * 2
    b += w          # b = 2a + w
    b *= a          # b = (2a + w) a: Mul saved b's old value, not the memory overwritten
    b.sub_(1.0)
    assert not b.is_leaf and b._version == 3
    b.sum().backward()
    an, wn = a.numpy(), w.numpy()
    np.testing.assert_allclose(b.numpy(), (2 * an + wn) * an - 1)
    np.testing.assert_allclose(a.grad.numpy(), 4 * an + wn)
    np.testing.assert_allclose(w.grad.numpy(), an)


def test_a_constant_becomes_a_non_leaf_when_a_value_with_grad_is_written(device):
    w = t64([1.0, 2.0], device, requires_grad=True)
    buf = md.zeros(3, 2, dtype="float64", device=device)
    buf[1] = w * 3
    buf[2] += w     # through a view of buf: buf is rebased, the view too
    assert buf.requires_grad and not buf.is_leaf
    np.testing.assert_allclose(buf.numpy(), [[0, 0], [3, 6], [1, 2]])
    (buf * t64([[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]], device)).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2 * 3 + 5, 2 * 3 + 5])


# ---- x[i] = v: gradients against NumPy ------------------------------------------------------

INDICES = {
    "int": (1, (4,)),
    "slice": ((slice(None), slice(1, 3)), (3, 2)),
    "ellipsis-None": ((Ellipsis, 2), (3,)),
    "advanced": (([0, 2], [3, 1]), (2,)),
    "advanced-row": (([2, 0],), (2, 4)),
    "boolean": (np.array([[True, False, True, False], [False, False, True, True],
                          [True, True, False, False]]), (6,)),
    "broadcast-value": ((slice(0, 2),), (1, 4)),
    "scalar-value": ((slice(None), 0), ()),
}


@pytest.mark.parametrize("name", sorted(INDICES))
def test_setitem_gradients_match_numpy(device, name):
    index, vshape = INDICES[name]
    rng = np.random.default_rng(1)
    xn, vn = rng.normal(size=(3, 4)), rng.normal(size=vshape)
    weights = rng.normal(size=(3, 4))
    x, v = t64(xn, device, True), t64(vn, device, True)
    y = x * 1
    y[md.tensor(index, device=device) if isinstance(index, np.ndarray) else index] = v
    (y * t64(weights, device)).sum().backward()
    ref = xn.copy()
    ref[index] = vn
    np.testing.assert_allclose(y.numpy(), ref)
    written = np.zeros((3, 4), bool)
    written[index] = True
    np.testing.assert_allclose(x.grad.numpy(), np.where(written, 0.0, weights))
    gv = np.broadcast_to(weights[index], np.broadcast_shapes(weights[index].shape, vshape))
    gv = gv.sum(axis=tuple(range(gv.ndim - len(vshape)))) if gv.ndim > len(vshape) else gv
    gv = gv.sum(axis=tuple(i for i, n in enumerate(vshape) if n == 1), keepdims=True) \
        if vshape else gv.sum()
    np.testing.assert_allclose(v.grad.numpy(), gv)


def test_setitem_with_repeated_advanced_indices_follows_index_put(device):
    """Values: the last write wins (NumPy, on the CPU); gradient: every value gets the
    upstream gradient at its index, even one that was overwritten (torch's index_put_)."""
    x = t64(np.zeros(4), device, True)
    v = t64([1.0, 2.0, 3.0], device, True)
    y = x * 1
    y[md.tensor([1, 3, 1], device=device)] = v
    if device == "cpu":  # which repeat wins is undefined on the GPU (CuPy, as torch says)
        np.testing.assert_array_equal(y.numpy(), [0.0, 3.0, 0.0, 2.0])
    (y * t64([10.0, 20.0, 30.0, 40.0], device)).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [20.0, 40.0, 20.0])
    np.testing.assert_array_equal(x.grad.numpy(), [10.0, 0.0, 30.0, 0.0])


@pytest.mark.parametrize("index", [(1, slice(0, 3)), ([0, 2],), (Ellipsis, [1, 3])],
                         ids=["basic", "advanced", "ellipsis-advanced"])
def test_setitem_gradcheck(device, index):
    def fn(x, v):
        y = x * x
        y[index] = v * v
        return F.tanh(y)

    rng = np.random.default_rng(2)
    x = t64(rng.normal(size=(3, 4)), device, True)
    shape = np.empty((3, 4))[index].shape
    v = t64(rng.normal(size=shape), device, True)
    assert md.gradcheck(fn, x, v)
    assert md.gradgradcheck(fn, x, v)


def test_in_place_arithmetic_gradcheck(device):
    def fn(x, w):
        y = F.tanh(x) * 1
        y *= w
        y += x
        y /= w * w + 1
        y -= 0.5
        y[0].mul_(w[0])         # through a view of y
        y.clamp_(-5.0, 5.0)
        m = y * 1
        m @= md.tensor(np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 1.0]]),
                       device=x.device)
        return m

    rng = np.random.default_rng(3)
    x = t64(rng.normal(size=(2, 3)), device, True)
    w = t64(rng.uniform(0.5, 1.5, size=(2, 3)), device, True)
    assert md.gradcheck(fn, x, w)
    assert md.gradgradcheck(fn, x, w)


def test_in_place_through_views_reaches_the_base(device):
    a = t64(np.arange(12.0).reshape(3, 4), device, True)
    b = a * 1
    b.view(12)[5] = 0.0                     # a reshape view, then an index: writes b[1, 1]
    b.transpose()[3].mul_(2.0)              # column 3 of b, through a transpose view
    col = b[:, 0]
    col += 100.0
    ref = np.arange(12.0).reshape(3, 4)
    ref[1, 1] = 0
    ref[:, 3] *= 2
    ref[:, 0] += 100
    np.testing.assert_allclose(b.numpy(), ref)
    np.testing.assert_allclose(col.numpy(), ref[:, 0])
    assert b._version == col._version == 3
    (b * b).sum().backward()
    scale = np.ones((3, 4))
    scale[1, 1] = 0
    scale[:, 3] = 2
    np.testing.assert_allclose(a.grad.numpy(), 2 * ref * scale)


# ---- version counters ---------------------------------------------------------------------

def test_views_and_detach_share_the_version_counter(device):
    x = md.zeros(3, 4, device=device)
    views = [x[0], x[:, 1:], x.view(12), x.transpose(), x.detach(), x.reshape(2, 6)[1],
             md.split(x, 1)[2]]
    x[0, 0] = 1.0
    assert x._version == 1 and all(v._version == 1 for v in views)
    views[3][0, 1] = 2.0                     # x[1, 0], through the transpose
    assert x._version == 2 and x.numpy()[1, 0] == 2.0
    assert all(v._version == 2 for v in views)
    copy = x[[0, 1]]                          # advanced indexing copies: its own counter
    x += 1
    assert copy._version == 0 and x._version == 3


@pytest.mark.parametrize("op, saved", [("mul", "input"), ("exp", "output"),
                                       ("sigmoid", "output"), ("tanh", "output")])
def test_backward_refuses_a_saved_tensor_modified_after_forward(device, op, saved):
    a = t64(np.linspace(-1, 1, 12).reshape(3, 4), device, True)
    w = t64(np.full((3, 4), 0.5), device, True)
    h = a * 1
    if op == "mul":
        y, modify, name = h * w, h, "Mul"
    else:
        y = getattr(F, op)(h)      # backward reaches it through the in-place ops below
        modify, name = y, {"exp": "Exp", "sigmoid": "Sigmoid", "tanh": "Tanh"}[op]
    modify += 1.0
    modify.mul_(2.0)
    with pytest.raises(RuntimeError, match=modified(name, "3, 4", 2, 0)):
        y.sum().backward()


def test_backward_refuses_a_tensor_modified_through_a_view(device):
    a = t64(np.arange(12.0).reshape(3, 4), device, True)
    w = t64(np.ones((3, 4)), device, True)
    y = a * w
    with md.no_grad():
        a.view(12)[3] = 0.0                  # changes a's memory behind Mul's back
    with pytest.raises(RuntimeError, match=modified("Mul", "3, 4", 1, 0)):
        y.sum().backward()
    b = a * 2
    z = b.view(3, 4, 1) * w.reshape(3, 4, 1)   # Mul saved a view of b
    b[1].fill_(0.0)                          # b itself is modified afterwards
    with pytest.raises(RuntimeError, match=modified("Mul", "3, 4, 1", 1, 0)):
        z.sum().backward()
    x = t64([1.0, 2.0], device, True)
    q = x * x
    x.detach().zero_()                       # detach shares the counter, as in torch
    with pytest.raises(RuntimeError, match=modified("Mul", "2,", 1, 0)):
        q.sum().backward()


def test_in_place_on_a_tensor_nobody_saved_is_fine(device):
    a = t64([1.0, 2.0, 3.0], device, True)
    w = t64([2.0, 2.0, 2.0], device, True)
    h = a * 1
    y = h + w                      # Add saves nothing
    r = F.relu(h)                  # relu saves a mask, not h
    h += 10.0
    h[0] = -1.0
    (y.sum() + r.sum()).backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 1.0, 1.0])


def test_saved_version_is_the_one_at_save_time(device):
    a = t64([1.0, 2.0], device, True)
    h = a * 1
    h += 1.0                        # before the save: fine
    y = h * h
    assert h._version == 1
    y.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * (a.numpy() + 1))


# ---- errors ---------------------------------------------------------------------------------

def test_in_place_errors_name_the_op_and_the_fix(device):
    i = md.tensor(np.arange(3), device=device)
    with pytest.raises(TypeError, match=r"add_: the result \(float64\) cannot be stored in "
                                        r"place in this int64 tensor; write x = x \+ y"):
        i += 1.5
    x = md.zeros(3, device=device)
    with pytest.raises(RuntimeError, match=r"mul_: a value of shape \(2, 3\) does not "
                                           r"broadcast to the shape \(3,\)"):
        x *= md.ones(2, 3, device=device)
    e = md.zeros(1, 3, device=device).expand(2, 3)
    with pytest.raises(RuntimeError, match=r"broadcast view.*\.clone\(\)"):
        e.add_(1.0)
    with pytest.raises(ValueError, match=r"clamp_: at least one of min= and max="):
        x.clamp_()
    with pytest.raises(IndexError, match=r"setitem: .*tensor shape \(3,\)"):
        x[5] = 1.0


@pytest.mark.gpu
def test_in_place_across_devices_names_both():
    x = md.zeros(3, device="cuda")
    with pytest.raises(ValueError, match=r"'cuda' but the value is on 'cpu'"):
        x += md.ones(3, device="cpu")
    with pytest.raises(ValueError, match=r"setitem: the tensor is on 'cuda' but the value is "
                                         r"on 'cpu'"):
        x[0:2] = np.ones(2)
    x.copy_(md.ones(3, device="cpu"))     # copy_ moves, as torch's does
    np.testing.assert_array_equal(x.numpy(), [1.0, 1.0, 1.0])


def test_a_view_taken_before_an_in_place_op_on_its_base_follows_the_new_values(device):
    """torch regenerates such a view's graph; so does minidl (when the view is next used)."""
    a = t64([1.0, 2.0, 3.0], device, True)
    w = t64([5.0, 7.0], device, True)
    b = a * 1
    head = b[:2]            # taken before the writes below
    tail = b[1:]
    b *= 3                  # b = 3a
    tail[0] = w[0]          # b[1] = w0, through another view
    np.testing.assert_allclose(head.numpy(), [3.0, 5.0])
    (head * t64([10.0, 100.0], device)).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [30.0, 0.0, 0.0])
    np.testing.assert_allclose(w.grad.numpy(), [100.0, 0.0])
    buf = md.zeros(2, dtype="float64", device=device)
    row = buf[1:]           # taken while buf needs no grad
    buf[1] = w[1] * 2
    assert (row * 1).requires_grad
    (row * 1).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [100.0, 2.0])


def test_an_expanded_view_shares_the_counter_of_its_base(device):
    a = t64([1.0, 2.0], device, True)
    w = t64(np.ones((3, 2)), device, True)
    h = a * 1
    y = h.expand(3, 2) * w               # Mul saved the expanded view of h
    h += 1.0
    with pytest.raises(RuntimeError, match=modified("Mul", "3, 2", 1, 0)):
        y.sum().backward()


def test_augmented_assignment_to_an_index(device):
    """``b[i] += w`` is getitem, an in-place add, then setitem, as in Python and torch."""
    a = t64([[1.0, 2.0], [3.0, 4.0]], device, True)
    w = t64([10.0, 20.0], device, True)
    b = a * 1
    b[0] += w                       # a view: the add writes through, setitem writes again
    b[:, 1] *= w
    assert b._version == 4
    (b * b).sum().backward()
    an, wn = a.numpy(), w.numpy()
    ref = an.copy()
    ref[0] += wn
    ref[:, 1] *= wn
    np.testing.assert_allclose(b.numpy(), ref)
    np.testing.assert_allclose(a.grad.numpy(), [[2 * ref[0, 0], 2 * ref[0, 1] * wn[0]],
                                                [2 * ref[1, 0], 2 * ref[1, 1] * wn[1]]])
    np.testing.assert_allclose(w.grad.numpy(), [
        2 * ref[0, 0] + 2 * ref[0, 1] * (an[0, 1] + wn[1]),
        2 * ref[0, 1] * wn[0] + 2 * ref[1, 1] * an[1, 1]])


@st.composite
def shapes_and_indices(draw):
    """A shape of 1-3 dims and a basic or advanced index into it."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    index = []
    for n in shape[:draw(st.integers(1, len(shape)))]:
        kind = draw(st.sampled_from(["int", "slice", "list"]))
        if kind == "int":
            index.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = draw(st.integers(0, n - 1))
            index.append(slice(start, draw(st.integers(start + 1, n)), draw(st.integers(1, 2))))
        else:  # distinct positions, so each written value survives (gradcheck-able)
            index.append(draw(st.permutations(range(n)))[:draw(st.integers(1, n))])
    lists = [i for i in index if isinstance(i, list)]
    if len(lists) > 1:  # advanced indices broadcast together: make them one length
        k = min(len(i) for i in lists)
        index = [i[:k] if isinstance(i, list) else i for i in index]
    return shape, tuple(index), draw(st.booleans())


@fixture_ok
@given(case=shapes_and_indices(), seed=seeds)
def test_setitem_against_numpy_on_random_indices(device, case, seed):
    shape, index, scalar_value = case
    rng = np.random.default_rng(seed)
    xn = rng.normal(size=shape)
    region = xn[index].shape
    vn = rng.normal(size=() if scalar_value else region)
    weights = rng.normal(size=shape)
    x, v = t64(xn, device, True), t64(vn, device, True)
    y = x * 1
    y[index] = v
    (y * t64(weights, device)).sum().backward()
    ref = xn.copy()
    ref[index] = vn
    written = np.zeros(shape, bool)
    written[index] = True
    np.testing.assert_allclose(y.numpy(), ref)
    np.testing.assert_allclose(x.grad.numpy(), np.where(written, 0.0, weights))
    gv = weights[index]
    np.testing.assert_allclose(v.grad.numpy(), gv.sum() if scalar_value else gv)


UNARY = {"neg_": np.negative, "abs_": np.abs, "exp_": np.exp, "log_": np.log,
         "sqrt_": np.sqrt, "tanh_": np.tanh, "relu_": lambda a: np.maximum(a, 0),
         "sigmoid_": lambda a: 1 / (1 + np.exp(-a))}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_in_place_ops(device, name):
    rng = np.random.default_rng(4)
    an = rng.uniform(0.2, 2.0, size=(2, 3)) * np.where(
        name in ("log_", "sqrt_"), 1.0, rng.choice([-1.0, 1.0], size=(2, 3)))
    x = t64(an, device)
    where = address(x.data)
    assert getattr(x, name)() is x and address(x.data) == where and x._version == 1
    np.testing.assert_allclose(x.numpy(), UNARY[name](an), rtol=1e-12)

    def fn(a):
        h = a * 1
        getattr(h, name)()
        return h * a               # uses a as well, so the old value's gradient matters

    assert md.gradcheck(fn, t64(an, device, True))
    assert md.gradgradcheck(fn, t64(an, device, True))


def test_pow_in_place(device):
    x = t64([1.0, 2.0, 3.0], device)
    x **= 2
    x.pow_(0.5)
    np.testing.assert_allclose(x.numpy(), [1.0, 2.0, 3.0])
    assert x._version == 2
    assert md.gradcheck(lambda a, b: (a * 1).pow_(b), t64([1.0, 2.0], device, True),
                        t64([1.5, 0.5], device, True))
    with pytest.raises(TypeError, match=r"exp_: this int64 tensor cannot hold"):
        md.tensor(np.arange(3), device=device).exp_()


def test_an_optimizer_step_is_an_in_place_change():
    """As in torch: a graph built before opt.step() refuses to backward through the old
    weights (the classic GAN mistake), and a non-leaf's requires_grad cannot be switched off."""
    from minidl import optim

    w = md.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    y = (w * w).sum()
    v = w._version
    opt.step()
    assert w._version == v + 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
    b = w * 2
    with pytest.raises(RuntimeError, match=r"only leaves' flags can change.*\.detach\(\)"):
        b.requires_grad_(False)
    assert b.requires_grad
