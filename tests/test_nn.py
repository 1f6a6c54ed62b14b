"""Module API: registration, names, modes, freezing, state dicts, hooks, devices, repr."""
from __future__ import annotations

import copy
import pickle
import re

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
import minidl.nn as nn
import minidl.optim as optim
from minidl.autograd import Function


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(3, dtype=np.float32))
        self.fc = nn.Linear(3, 3)
        self.register_buffer("count", md.zeros(1))
        self.act = nn.ReLU()

    def forward(self, x):
        self.count.data = self.count.data + 1
        return self.act(self.fc(x * self.scale))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 3), Block())
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.features(x))


def test_parameter_is_a_tensor_requiring_grad():
    p = nn.Parameter(np.zeros((2, 3), dtype=np.float32))
    assert isinstance(p, md.Tensor) and p.requires_grad and p.shape == (2, 3)
    assert nn.Parameter(md.ones(2), requires_grad=False).requires_grad is False
    assert "Parameter containing" in repr(p)


def test_registration_order_and_dotted_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["features.0.weight", "features.0.bias", "features.1.scale",
                     "features.1.fc.weight", "features.1.fc.bias", "head.weight", "head.bias"]
    assert [n for n, _ in net.named_buffers()] == ["features.1.count"]
    # as torch: each module's own parameters, then its buffers, then its children
    assert list(net.state_dict()) == names[:3] + ["features.1.count"] + names[3:]
    assert [type(m).__name__ for m in net.children()] == ["Sequential", "Linear"]
    assert [n for n, _ in net.named_modules()] == ["", "features", "features.0", "features.1",
                                                   "features.1.fc", "features.1.act", "head"]
    assert net.num_parameters() == 4 * 3 + 3 + 3 + 9 + 3 + 6 + 2


def test_order_is_deterministic_across_instances():
    a = [p.shape for p in Net().parameters()]
    b = [p.shape for p in Net().parameters()]
    assert a == b


def test_reassignment_and_deletion():
    m = nn.Module()
    m.w = nn.Parameter(md.zeros(2))
    m.w = nn.Parameter(md.ones(3))          # replace, keeps one entry
    assert [n for n, _ in m.named_parameters()] == ["w"] and m.w.shape == (3,)
    m.sub = nn.Linear(2, 2)
    m.sub = None                            # removing a child
    assert list(m.children()) == []
    with pytest.raises(TypeError, match="parameter 'w'"):
        m.w = md.zeros(3)                   # a plain Tensor cannot replace a Parameter
    m.register_buffer("b", md.zeros(2))
    m.b = md.ones(2)                        # a buffer can be rebound to a Tensor
    assert m.b.data.sum() == 2
    del m.w
    assert list(m.parameters()) == []
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = m.nope


def test_init_must_be_called():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(md.zeros(1))
    with pytest.raises(AttributeError, match=re.escape("super().__init__()")):
        Bad()


def test_shared_parameters_appear_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 3


def test_train_eval_propagate():
    net = Net()
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.features.eval()
    assert net.training and not net.features[1].fc.training


def test_buffers_are_not_parameters():
    bn = nn.BatchNorm1d(3)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var",
                                                  "num_batches_tracked"]
    assert bn.num_batches_tracked.dtype == np.int64
    m = nn.Module()
    m.register_buffer("tmp", md.zeros(2), persistent=False)
    assert list(m.state_dict()) == [] and len(list(m.buffers())) == 1


def test_freeze_unfreeze_and_trainable_keyword():
    net = Net()
    net.features.freeze()
    assert net.features.trainable is False and net.head.trainable
    assert all(not p.requires_grad for p in net.features.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["head.weight",
                                                                         "head.bias"]
    assert net.num_parameters(trainable_only=True) == 8
    net.features.unfreeze()
    assert all(p.requires_grad for p in net.parameters())
    lin = nn.Linear(2, 2, trainable=False)
    assert not lin.weight.requires_grad and not lin.trainable
    assert "trainable=False" in repr(lin)
    net.trainable = False
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_(True)
    assert all(p.requires_grad for p in net.parameters())


def test_frozen_layer_gets_no_grad_and_no_update():
    md.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    net[0].freeze()
    before = net[0].weight.numpy().copy(), net[0].bias.numpy().copy()
    head_before = net[2].weight.numpy().copy()
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    x = md.randn(6, 4)
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(net(x), md.zeros(6, 3)).backward()
        assert net[0].weight.grad is None and net[0].bias.grad is None
        assert net[2].weight.grad is not None
        opt.step()
    np.testing.assert_array_equal(net[0].weight.numpy(), before[0])
    np.testing.assert_array_equal(net[0].bias.numpy(), before[1])
    assert not np.allclose(net[2].weight.numpy(), head_before)


class _Spy:
    """Records every Function run (class name, output shapes) while active."""

    def __init__(self, monkeypatch):
        self.calls = []
        orig = Function.__call__
        spy = self

        def call(fn, *inputs):
            out = orig(fn, *inputs)
            outs = out if isinstance(out, tuple) else (out,)
            spy.calls.append((type(fn).__name__, [o.shape for o in outs]))
            return out
        monkeypatch.setattr(Function, "__call__", call)

    def shapes(self):
        return [s for _, shapes in self.calls for s in shapes]


def test_frozen_linear_skips_weight_gradient_work(monkeypatch):
    # in=7, out=5, batch=3: a (5, 7)-shaped result can only be the weight gradient.
    lin = nn.Linear(7, 5)
    x = md.randn(3, 7, requires_grad=True)
    spy = _Spy(monkeypatch)
    y = lin(x)
    spy.calls.clear()
    y.sum().backward()
    assert (5, 7) in spy.shapes()          # trainable: dW is computed
    lin.freeze()
    x.grad = None
    y = lin(x)
    spy.calls.clear()
    y.sum().backward()
    assert (5, 7) not in spy.shapes() and (5,) not in spy.shapes()
    assert x.grad is not None and x.grad.shape == (3, 7)   # dX still flows


def test_state_dict_round_trip():
    md.manual_seed(0)
    a, b = Net(), Net()
    a(md.randn(2, 4))
    b.load_state_dict(a.state_dict())
    for (n1, t1), (n2, t2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert n1 == n2
        np.testing.assert_array_equal(t1.numpy(), t2.numpy())
    # loaded values are copies, not aliases
    a.head.weight.data += 1
    assert not np.allclose(a.head.weight.numpy(), b.head.weight.numpy())
    # numpy arrays are accepted, and converted to the target dtype
    sd = {k: v.numpy().astype(np.float64) for k, v in a.state_dict().items()}
    b.load_state_dict(sd)
    assert b.head.weight.dtype == np.float32
    np.testing.assert_allclose(b.head.weight.numpy(), a.head.weight.numpy())


def test_state_dict_keep_vars_and_sharing():
    net = nn.Linear(2, 3)
    sd = net.state_dict(keep_vars=True)
    assert sd["weight"] is net.weight
    assert net.state_dict()["weight"].data is net.weight.data


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    net = Net()
    snapshot = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    bad = {k: v.numpy() + 1 for k, v in net.state_dict().items()}
    del bad["head.bias"]
    del bad["features.1.count"]
    bad["extra.weight"] = np.zeros(2)
    bad["features.0.weight"] = np.zeros((5, 4))
    with pytest.raises(nn.StateDictError) as err:
        net.load_state_dict(bad)
    msg = str(err.value)
    for key in ("head.bias", "features.1.count", "extra.weight", "features.0.weight",
                "(5, 4)", "(3, 4)", "nothing was changed"):
        assert key in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)
    assert err.value.missing == ["features.1.count", "head.bias"]
    assert err.value.unexpected == ["extra.weight"]
    assert [m[0] for m in err.value.mismatched] == ["features.0.weight"]
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), snapshot[k])


def test_load_state_dict_non_strict():
    net = Net()
    sd = {k: v.numpy() * 0 for k, v in net.state_dict().items() if k.startswith("head")}
    sd["other"] = np.zeros(1)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert unexpected == ["other"] and "features.0.weight" in missing
    assert net.head.weight.numpy().sum() == 0
    with pytest.raises(nn.StateDictError, match="shape"):
        net.load_state_dict({"head.weight": np.zeros((1, 1))}, strict=False)
    with pytest.raises(TypeError, match="mapping"):
        net.load_state_dict([1, 2])


@pytest.mark.parametrize("bad_last, match", [
    (np.zeros((7,)), "head.bias: checkpoint \\(7,\\) vs model \\(2,\\)"),
    (np.full((2,), "x"), "head.bias: cannot convert"),
])
def test_load_state_dict_bad_last_entry_changes_no_earlier_entry(bad_last, match):
    """Every entry but the last is good and different: a loader that assigns key by key fails."""
    net = Net()
    keys = list(net.state_dict())
    assert keys[-1] == "head.bias"
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd = {k: v + 1 for k, v in before.items()}
    sd["head.bias"] = bad_last
    with pytest.raises(nn.StateDictError, match=match):
        net.load_state_dict(sd)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_to_dtype_and_double():
    net = Net().double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    opt_param = net.head.weight
    net.float()
    assert net.head.weight is opt_param and opt_param.dtype == np.float32
    net.to(np.float64)
    assert net.head.bias.dtype == np.float64
    bn = nn.BatchNorm1d(2).double()
    assert bn.num_batches_tracked.dtype == np.int64 and bn.running_mean.dtype == np.float64


def test_to_device(device):
    net = Net()
    net(md.randn(2, 4)).sum().backward()
    net.to(device)
    assert net.device == device
    assert all(p.device == device for p in net.parameters())
    assert all(b.device == device for b in net.buffers())
    assert all(p.grad.device == device for p in net.parameters())
    y = net(md.randn(2, 4, device=device))
    assert y.device == device


def test_zero_grad():
    net = Net()
    net(md.randn(2, 4)).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(float(np.abs(p.grad.numpy()).sum()) == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_forward_hooks():
    net = Net()
    seen = []
    h = net.head.register_forward_hook(lambda m, inp, out: seen.append((inp[0].shape, out.shape)))
    net(md.randn(5, 4))
    assert seen == [((5, 3), (5, 2))]
    h.remove()
    net(md.randn(5, 4))
    assert len(seen) == 1
    with net.head.register_forward_hook(lambda m, inp, out: out * 0):
        assert float(np.abs(net(md.randn(2, 4)).numpy()).sum()) == 0
    assert float(np.abs(net(md.randn(2, 4)).numpy()).sum()) > 0
    pre = net.head.register_forward_pre_hook(lambda m, inp: (inp[0] * 0,))
    np.testing.assert_allclose(net(md.randn(2, 4)).numpy(),
                               np.broadcast_to(net.head.bias.numpy(), (2, 2)))
    pre.remove()


def test_repr_prints_the_tree():
    text = repr(Net())
    assert text.splitlines()[0] == "Net("
    assert "(features): Sequential(" in text
    assert "    (0): Linear(in_features=4, out_features=3, bias=True)" in text
    assert "(head): Linear(in_features=3, out_features=2, bias=True)" in text
    assert text.endswith(")")


def test_sequential_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU) and isinstance(seq[-1], nn.Linear)
    sub = seq[:2]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2
    assert sub(md.randn(4, 2)).shape == (4, 3)
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and [n for n, _ in seq.named_children()][-1] == "3"
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    assert nn.Sequential([nn.ReLU(), nn.ReLU()]).__len__() == 2
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(list(ml.parameters())) == 6 and len(ml) == 3
    assert [n for n, _ in ml.named_parameters()][:2] == ["0.weight", "0.bias"]
    ml[1] = nn.Linear(2, 4)
    assert ml[1].out_features == 4
    md_ = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md_["b"] = nn.Linear(1, 2)
    assert list(md_) == ["a", "b"] and "a" in md_
    assert list(md_.state_dict())[2] == "b.weight"
    with pytest.raises(ValueError, match="'.'"):
        md_["x.y"] = nn.ReLU()


def test_regularization_loss_and_constraints():
    from minidl.optim import constraints, regularizers
    lin = nn.Linear(3, 2, weight_regularizer=regularizers.l2(0.1),
                    bias_regularizer=regularizers.l1(0.5))
    other = nn.Linear(2, 2)
    net = nn.Sequential(lin, other)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    expected = 0.1 * (w ** 2).sum() + 0.5 * np.abs(b).sum()
    reg = net.regularization_loss()
    assert reg.requires_grad
    np.testing.assert_allclose(reg.item(), expected, rtol=1e-6)
    reg.backward()
    np.testing.assert_allclose(lin.weight.grad.numpy(), 0.2 * w, rtol=1e-6)
    assert other.weight.grad is None
    assert nn.Sequential(nn.Linear(2, 2)).regularization_loss() == 0.0
    capped = nn.Linear(4, 3, weight_constraint=constraints.max_norm(0.1))
    capped.apply_constraints()
    assert np.all(np.linalg.norm(capped.weight.numpy(), axis=1) <= 0.1 + 1e-6)
    assert "weight_regularizer=l2(0.1)" in repr(lin)


def test_deepcopy_and_pickle():
    net = Net()
    net.head.freeze()
    twin = copy.deepcopy(net)
    assert twin.head.weight is not net.head.weight
    np.testing.assert_array_equal(twin.head.weight.numpy(), net.head.weight.numpy())
    assert not twin.head.weight.requires_grad and not twin.head.trainable
    again = pickle.loads(pickle.dumps(net))
    x = md.randn(2, 4)
    np.testing.assert_allclose(again(x).numpy(), net(x).numpy(), rtol=1e-6)


def test_layer_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Linear\(4, 2\).*\(\.\.\., 4\).*\(3, 5\)"):
        nn.Linear(4, 2)(md.randn(3, 5))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*\(N, 3, H, W\).*\(2, 1, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(md.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\).*\(N, C, H, W\).*\(2, 4\)"):
        nn.BatchNorm2d(4)(md.randn(2, 4))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Linear(2, 2, activation="swishy")


def test_functional_call_substitutes_and_restores():
    lin = nn.Linear(2, 2)
    w = md.zeros(2, 2)
    out = nn.functional_call(lin, {"weight": w, "bias": md.ones(2)}, md.randn(3, 2))
    np.testing.assert_array_equal(out.numpy(), np.ones((3, 2)))
    assert isinstance(lin.weight, nn.Parameter)
    with pytest.raises(KeyError, match="not a parameter"):
        nn.functional_call(lin, {"nope": w}, md.randn(3, 2))


def test_gradient_clipping():
    a = nn.Parameter(np.array([3.0, 4.0], dtype=np.float32))
    b = nn.Parameter(np.array([12.0], dtype=np.float32))
    a.grad, b.grad = md.tensor([3.0, 4.0]), md.tensor([12.0])
    shared = a.grad.data
    norm = nn.clip_grad_norm_([a, b], max_norm=1.3)
    assert norm == pytest.approx(13.0)
    np.testing.assert_allclose(a.grad.numpy(), [0.3, 0.4], rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [1.2], rtol=1e-5)
    np.testing.assert_array_equal(shared, [3.0, 4.0])   # rebinding, not in place
    assert nn.clip_grad_norm_([a, b], max_norm=100.0) == pytest.approx(1.3, rel=1e-4)
    np.testing.assert_allclose(a.grad.numpy(), [0.3, 0.4], rtol=1e-5)   # under the cap
    a.grad = md.tensor([3.0, -4.0])
    assert nn.clip_grad_norm_([a], 1.0, norm_type=float("inf")) == pytest.approx(4.0)
    np.testing.assert_allclose(a.grad.numpy(), [0.75, -1.0], rtol=1e-5)
    a.grad = md.tensor([3.0, -4.0])
    shared = a.grad.data
    nn.clip_grad_value_([a], 3.5)
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, -3.5])
    np.testing.assert_array_equal(shared, [3.0, -4.0])
    assert nn.utils.clip_grad_norm_([nn.Parameter(md.zeros(1))], 1.0) == 0.0


@pytest.mark.parametrize("method", ["compile", "fit", "evaluate", "predict", "summary"])
def test_keras_methods_on_an_nn_module_name_the_keras_model(method):
    net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(AttributeError, match=r"minidl\.keras\.Sequential\(\[\.\.\.\]\)") as e:
        getattr(net, method)
    assert f"no {method}()" in str(e.value)
    assert not hasattr(net, method)
    with pytest.raises(AttributeError, match="object has no attribute 'compiled'"):
        net.compiled
