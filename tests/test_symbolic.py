"""The symbolic graph (minidl/nn/symbolic.py): Input, layers on symbolic tensors, GraphModule."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
import minidl.nn as nn


def wide_and_deep():
    """The lecture's snippet, rebuilt in minidl."""
    input_wide = nn.Input(shape=[5], name="wide_input")
    input_deep = nn.Input(shape=[6], name="deep_input")
    hidden1 = nn.Linear(6, 30, activation="relu")(input_deep)
    hidden2 = nn.Linear(30, 30, activation="relu")(hidden1)
    concat = nn.Concat()([input_wide, hidden2])
    output = nn.Linear(35, 1, name="output")(concat)
    aux_output = nn.Linear(30, 1, name="aux_output")(hidden2)
    return nn.GraphModule(inputs=[input_wide, input_deep], outputs=[output, aux_output])


def test_input_and_symbolic_shapes():
    a = nn.Input((3, 8, 8), name="img")
    assert a.shape == (None, 3, 8, 8) and a.name == "img" and a.ndim == 4
    h = nn.Flatten()(a)
    assert h.shape == (None, 192)
    assert nn.Linear(192, 10)(h).shape == (None, 10)
    assert "SymbolicTensor" in repr(h)
    with pytest.raises(ValueError, match="positive ints"):
        nn.Input((0, 3))
    assert nn.Input(4).shape == (None, 4)


def test_model_forward_matches_manual_composition():
    md.manual_seed(0)
    model = wide_and_deep()
    l1, l2 = model.get_layer("linear"), model.get_layer("linear_1")
    out, aux = model.get_layer("output"), model.get_layer("aux_output")
    xw, xd = md.randn(4, 5), md.randn(4, 6)
    y, ya = model(xw, xd)
    h = F.relu(l2(F.relu(l1(xd))))
    np.testing.assert_allclose(y.numpy(), out(md.cat([xw, h], axis=1)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(ya.numpy(), aux(h).numpy(), rtol=1e-6)
    assert [n for n, _ in model.named_children()] == ["linear", "linear_1", "concat", "output",
                                                     "aux_output"]
    assert list(model.state_dict())[:2] == ["linear.weight", "linear.bias"]
    y2, _ = model([xw, xd])                      # a list of inputs works too
    np.testing.assert_allclose(y2.numpy(), y.numpy())


def test_gradcheck_through_a_functional_model():
    md.manual_seed(0)
    a, b = nn.Input((3,)), nn.Input((2,))
    shared = nn.Linear(3, 3)
    h1 = nn.Tanh()(shared(a))
    h2 = shared(nn.Linear(2, 3)(b))                 # the same layer on another branch
    out = nn.Linear(6, 2)(nn.Concat(axis=1)(h1, h2))
    model = nn.GraphModule([a, b], out).double()
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == 6                         # shared weights counted once
    params = [p for _, p in model.named_parameters()]

    def fn(x1, x2, *ps):
        return nn.functional_call(model, dict(zip(names, ps)), x1, x2)
    x1 = md.randn(4, 3, dtype="float64", requires_grad=True)
    x2 = md.randn(4, 2, dtype="float64", requires_grad=True)
    leaves = [md.tensor(p.numpy(), requires_grad=True) for p in params]
    assert md.gradcheck(fn, x1, x2, *leaves)


def test_shared_layer_gets_gradient_from_both_uses():
    a = nn.Input((2,))
    shared = nn.Linear(2, 2, bias=False)
    out = nn.Add()(shared(a), shared(shared(a)))
    model = nn.GraphModule(a, out)
    with md.no_grad():
        shared.weight.data = np.array([[1.0, 2.0], [0.0, 1.0]], dtype=np.float32)
    x = md.tensor([[1.0, -1.0]])
    model(x).sum().backward()
    # d/dW sum(W x + W W x) computed by hand
    W, xv = shared.weight.numpy(), x.numpy()[0]
    g = np.outer([1, 1], xv) + np.outer([1, 1], W @ xv) + np.outer(W.T @ [1, 1], xv)
    np.testing.assert_allclose(shared.weight.grad.numpy(), g, rtol=1e-6)


def test_symbolic_arithmetic_and_lambda():
    a = nn.Input((3,))
    out = nn.Lambda(lambda t: t * 2)(a) + a - 1
    model = nn.GraphModule(a, out)
    x = md.randn(2, 3)
    np.testing.assert_allclose(model(x).numpy(), 3 * x.numpy() - 1, rtol=1e-6)


def test_multiple_outputs_from_one_layer():
    class Split(nn.Module):
        def forward(self, x):
            return x[:, :2], x[:, 2:]
    a = nn.Input((5,))
    left, right = Split()(a)
    assert left.shape == (None, 2) and right.shape == (None, 3)
    model = nn.GraphModule(a, [nn.Linear(2, 1)(left), right])
    y1, y2 = model(md.randn(4, 5))
    assert y1.shape == (4, 1) and y2.shape == (4, 3)


def test_model_errors():
    a, b = nn.Input((3,)), nn.Input((3,))
    out = nn.Add()(a, b)
    with pytest.raises(ValueError, match="not in inputs"):
        nn.GraphModule(a, out)
    with pytest.raises(ValueError, match="must come from nn.Input"):
        nn.GraphModule(out, out)
    with pytest.raises(TypeError, match="symbolic"):
        nn.GraphModule(a, md.randn(2, 3))
    model = nn.GraphModule([a, b], out)
    with pytest.raises(ValueError, match=r"expects shape \(None, 3\), got \(2, 4\)"):
        model(md.randn(2, 4), md.randn(2, 3))
    with pytest.raises(ValueError, match="GraphModule: expected 2 inputs"):
        model(md.randn(2, 3))
    with pytest.raises(ValueError, match=r"symbolic input.*\(None, 3\).*Linear\(4, 2\)"):
        nn.Linear(4, 2)(a)
    with pytest.raises(ValueError, match="two layers are named"):
        nn.GraphModule(a, [nn.Linear(3, 1, name="x")(a), nn.Linear(3, 1, name="x")(a)])

def test_nested_models():
    inner_in = nn.Input((4,))
    inner = nn.GraphModule(inner_in, nn.Linear(4, 2)(inner_in))
    outer_in = nn.Input((4,))
    outer = nn.GraphModule(outer_in, nn.ReLU()(inner(outer_in)))
    assert outer(md.randn(3, 4)).shape == (3, 2)
    assert [n for n, _ in outer.named_parameters()] == ["graph_module.linear.weight",
                                                       "graph_module.linear.bias"]


def test_nn_imports_nothing_from_optim_data_train_or_keras():
    import subprocess
    import sys
    code = ("import sys, minidl.nn as nn\n"
            "a = nn.Input((3,))\n"
            "nn.GraphModule(a, nn.Linear(3, 1)(a))(__import__('minidl').randn(2, 3))\n"
            "print(sorted({k.split('.')[1] for k in sys.modules if k.startswith('minidl.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(eval(out))
    assert "nn" in loaded and not loaded & {"optim", "data", "train", "keras"}, loaded



def test_an_error_of_another_kind_inside_a_symbolic_call_comes_out_unchanged():
    class Fails(nn.Module):
        def forward(self, x):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a layer-specific failure")

    inp = nn.Input((3,))
    with pytest.raises(UnicodeDecodeError, match="a layer-specific failure"):
        Fails()(inp)
