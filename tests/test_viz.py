"""minidl.viz.to_dot: one node per Function, gradient norms after backward, shading, output."""
from __future__ import annotations

import re

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import viz
from minidl.viz import to_dot

NODE = re.compile(r"^\s+(\w+) \[label=\"([^\"]*)\", shape=(\w+)", re.M)
EDGE = re.compile(r"^\s+(\w+) -> (\w+);", re.M)


def _nodes(source: str) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3)) for m in NODE.finditer(source)}


def _small_graph(device="cpu"):
    """loss = sum(tanh(x @ w + b) * 3): Functions MatMul, Add, Tanh, Mul, Sum."""
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((4, 3)), device=device, requires_grad=True)
    w = md.tensor(rng.standard_normal((3, 2)), device=device, requires_grad=True)
    b = md.tensor(rng.standard_normal(2), device=device, requires_grad=True)
    h = x @ w
    s = h + b
    t = F.tanh(s)
    m = t * 3.0
    loss = m.sum()
    return (x, w, b), (h, s, t, m), loss


def test_one_node_per_function_of_a_known_graph(device):
    (x, w, b), _, loss = _small_graph(device)
    graph = to_dot(loss, params={"x": x, "w": w, "b": b})
    nodes = _nodes(graph.source)
    ops = sorted(label.split("\\n")[0] for label, shape in nodes.values() if shape == "box")
    assert ops == ["Add", "MatMul", "Mul", "Sum", "Tanh"]
    assert sorted(graph.ops()) == ops
    leaves = sorted(label.split("\\n")[0] for label, shape in nodes.values() if shape == "ellipse")
    assert leaves == ["b", "w", "x"]
    # edges follow the data: x, w -> MatMul -> Add <- b; Add -> Tanh -> Mul -> Sum
    name = {k: v[0].split("\\n")[0] for k, v in nodes.items()}
    edges = sorted((name[a], name[b]) for a, b in EDGE.findall(graph.source))
    assert edges == sorted([("x", "MatMul"), ("w", "MatMul"), ("MatMul", "Add"), ("b", "Add"),
                            ("Add", "Tanh"), ("Tanh", "Mul"), ("Mul", "Sum")])
    # shapes are printed: MatMul output (4, 2), Sum output ()
    labels = {v[0].split("\\n")[0]: v[0] for v in nodes.values()}
    assert "(4, 2)" in labels["MatMul"] and "()" in labels["Sum"]


def test_shared_input_and_diamond_graph_have_each_function_once():
    a = md.randn(3, requires_grad=True)
    e = F.exp(a)
    loss = (e * e + e).sum()   # Exp feeds Mul twice and Add once
    graph = to_dot(loss)
    assert sorted(graph.ops()) == ["Add", "Exp", "Mul", "Sum"]
    name = {k: v[0].split("\\n")[0] for k, v in _nodes(graph.source).items()}
    edges = sorted((name[x], name[y]) for x, y in EDGE.findall(graph.source))
    assert edges == sorted([("parameter", "Exp"), ("Exp", "Mul"), ("Exp", "Mul"),
                            ("Exp", "Add"), ("Mul", "Add"), ("Add", "Sum")])


def test_grad_norms_after_backward_equal_direct_gradients():
    # the gradients arriving at each intermediate output, computed on an identical graph
    _, (h, s, t, m), loss2 = _small_graph()
    gh, gs, gt, gm = md.grad(loss2, [h, s, t, m])
    (x, w, b), _, loss = _small_graph()
    graph = to_dot(loss, params={"x": x, "w": w, "b": b})
    assert all(graph.grad_norm(k) is None for k, n in graph.nodes.items() if n.kind == "op")
    loss.backward()
    by_op = {n.label: graph.grad_norm(k) for k, n in graph.nodes.items() if n.kind == "op"}
    for op, g in [("MatMul", gh), ("Add", gs), ("Tanh", gt), ("Mul", gm)]:
        assert by_op[op] == pytest.approx(float(np.linalg.norm(g.numpy())), rel=1e-12)
    assert by_op["Sum"] == pytest.approx(1.0)
    by_leaf = {n.label: graph.grad_norm(k) for k, n in graph.nodes.items() if n.kind == "leaf"}
    assert by_leaf["w"] == pytest.approx(float(np.linalg.norm(w.grad.numpy())))
    assert f"|grad| = {by_op['Tanh']:.3g}" in graph.source


def test_vanishing_nodes_are_shaded():
    x = md.tensor(np.full((2, 2), 0.1), requires_grad=True)
    y = x
    for _ in range(8):          # each sigmoid multiplies the gradient by at most 1/4
        y = F.sigmoid(y)
    loss = y.sum()
    graph = to_dot(loss, threshold=1e-3)
    loss.backward()
    shaded = set(graph.shaded())
    norms = graph.grad_norms()
    top = max(v for v in norms.values() if v is not None)
    assert shaded == {k for k, v in norms.items() if v is not None and v < 1e-3 * top}
    assert shaded and len(shaded) < len(norms)
    assert "x" not in shaded
    for k in shaded:
        assert re.search(rf"^\s+{k} \[.*fillcolor=\"#b0b0b0\"", graph.source, re.M)
    # absolute threshold: nothing here is below 1e-12
    assert to_dot(F.sigmoid(x).sum(), relative=False, threshold=1e-12).shaded() == []


def test_freed_graph_gives_a_clear_error():
    x = md.randn(3, requires_grad=True)
    loss = F.tanh(x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="freed"):
        to_dot(loss)


def test_without_grads_and_on_a_leaf():
    x = md.randn(2, 2, requires_grad=True)
    src = to_dot((x * 2).sum(), show_grads=False).source
    assert "|grad|" not in src and src.startswith("digraph")
    assert len(_nodes(to_dot(x).source)) == 1
    with pytest.raises(TypeError, match="Tensor"):
        to_dot(np.ones(3))


def test_save_writes_dot_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(viz, "graphviz_available", lambda: False)
    x = md.randn(2, requires_grad=True)
    graph = to_dot(F.tanh(x).sum())
    with pytest.warns(UserWarning, match="Graphviz"):
        out = graph.save(tmp_path / "g.svg")
    assert out == tmp_path / "g.dot" and out.read_text() == graph.source
    assert graph.save(tmp_path / "h.dot").read_text().startswith("digraph")


@pytest.mark.skipif(not viz.graphviz_available(), reason="Graphviz 'dot' not installed")
def test_save_renders_svg_with_graphviz(tmp_path):
    x = md.randn(2, requires_grad=True)
    out = to_dot(F.tanh(x).sum()).save(tmp_path / "g.svg")
    assert out.suffix == ".svg" and "<svg" in out.read_text()


def test_deep_chain_does_not_recurse():
    x = md.randn(2, requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0
    assert len(to_dot(y.sum(), show_grads=False).ops()) == 3001
