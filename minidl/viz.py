"""The computational graph behind a tensor, as Graphviz DOT.

One box per ``Function`` (its op, its output shape and, once backward has run, the norm of
the gradient that reached its output) and one ellipse per leaf tensor. Boxes whose gradient
is below a threshold are shaded grey, so a student can see where the signal dies::

    >>> import minidl as md, minidl.functional as F
    >>> from minidl.viz import to_dot
    >>> x = md.randn(4, 3, requires_grad=True)
    >>> loss = F.sigmoid(F.sigmoid(x) * 8 - 20).sum()
    >>> graph = to_dot(loss)        # call before backward: it watches the gradients flow
    >>> loss.backward()
    >>> sorted(graph.ops())
    ['Mul', 'Sigmoid', 'Sigmoid', 'Sub', 'Sum']
    >>> path = graph.save("graph.svg")  # doctest: +SKIP

``save`` renders SVG/PNG/PDF with the ``dot`` program when it is installed and otherwise
writes the ``.dot`` text next to the requested path (returned).

Why before backward: ``backward()`` frees the graph (unless ``retain_graph=True``), so the
structure is snapshotted when ``to_dot`` is called, and hooks on every Function's outputs
record the gradient norms as backward passes through.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .autograd import Function, Tensor
from .backend import get_array_module

__all__ = ["DotGraph", "to_dot", "graphviz_available"]


def graphviz_available() -> bool:
    """Whether the Graphviz ``dot`` program is on PATH (needed for SVG/PNG output)."""
    return shutil.which("dot") is not None


def _norm(array: Any) -> float:
    xp = get_array_module(array)
    return float(xp.sqrt((array.astype(xp.float64) ** 2).sum()))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


@dataclass
class _Node:
    id: str
    kind: str                 # 'op' or 'leaf'
    label: str                # op name, or the leaf's name
    shapes: list[tuple[int, ...]]
    grad_sq: float | None = None          # sum of squared gradient entries seen so far
    leaf: Tensor | None = field(default=None, repr=False)


class DotGraph:
    """A snapshot of a computational graph; ``source`` is its DOT text.

    Built by :func:`to_dot`. Gradient norms appear once backward has run through the graph
    (for op nodes: the gradient arriving at the op's output; for leaves: ``leaf.grad``).
    """

    def __init__(self, threshold: float, relative: bool, show_grads: bool) -> None:
        self.nodes: dict[str, _Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.threshold = threshold
        self.relative = relative
        self.show_grads = show_grads

    # ---- queries --------------------------------------------------------------------
    def ops(self) -> list[str]:
        """The op name of every Function node (one entry per Function)."""
        return [n.label for n in self.nodes.values() if n.kind == "op"]

    def grad_norm(self, node_id: str) -> float | None:
        """The gradient norm recorded for a node, or None before backward."""
        node = self.nodes[node_id]
        if node.kind == "leaf":
            g = node.leaf.grad if node.leaf is not None else None
            return None if g is None else _norm(g.data)
        return None if node.grad_sq is None else math.sqrt(node.grad_sq)

    def grad_norms(self) -> dict[str, float | None]:
        """``{node id: gradient norm or None}`` for every node."""
        return {k: self.grad_norm(k) for k in self.nodes}

    def shaded(self) -> list[str]:
        """Ids of the nodes whose gradient norm is below the threshold."""
        norms = self.grad_norms()
        known = [v for v in norms.values() if v is not None and math.isfinite(v)]
        if not known or not self.show_grads:
            return []
        cut = self.threshold * (max(known) if self.relative else 1.0)
        return [k for k, v in norms.items() if v is not None and v < cut]

    # ---- output ---------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The graph as Graphviz DOT text (recomputed, so it shows the latest gradients)."""
        shaded = set(self.shaded())
        norms = self.grad_norms() if self.show_grads else {}
        legend = ""
        if self.show_grads:
            legend = (f', label="shaded: |grad| < {self.threshold:g}'
                      f'{" x largest" if self.relative else ""}", labelloc=b')
        lines = ["digraph minidl {",
                 f'  graph [rankdir=TB, fontname="Helvetica", fontsize=10{legend}];',
                 '  node [fontname="Helvetica", fontsize=10];']
        for node in self.nodes.values():
            text = [node.label, ", ".join(_shape_text(s) for s in node.shapes)]
            norm = norms.get(node.id)
            if self.show_grads and norm is not None:
                text.append(f"|grad| = {norm:.3g}")
            label = "\\n".join(t.replace('"', '\\"') for t in text)
            shape = "box" if node.kind == "op" else "ellipse"
            fill = "#b0b0b0" if node.id in shaded else ("#ffffff" if node.kind == "op"
                                                         else "#dde8f6")
            font = ', fontcolor="#404040"' if node.id in shaded else ""
            lines.append(f'  {node.id} [label="{label}", shape={shape}, style=filled, '
                         f'fillcolor="{fill}"{font}];')
        for a, b in self.edges:
            lines.append(f"  {a} -> {b};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.source

    def save(self, path: str | os.PathLike) -> Path:
        """Write the graph; returns the path actually written.

        ``.svg``, ``.png`` and ``.pdf`` are rendered with Graphviz's ``dot`` when it is
        installed; without it (or for any other suffix) the DOT text is written, to
        ``path`` with its suffix replaced by ``.dot``.
        """
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt in ("svg", "png", "pdf"):
            if graphviz_available():
                data = subprocess.run(["dot", f"-T{fmt}"], input=self.source.encode(),
                                      capture_output=True, check=True).stdout
                _atomic_write(path, data)
                return path
            warnings.warn(f"to_dot: Graphviz 'dot' not found, writing {path.with_suffix('.dot')} "
                          "instead (install graphviz to render it)", stacklevel=2)
        path = path.with_suffix(".dot")
        _atomic_write(path, self.source.encode())
        return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_dot(tensor: Tensor, show_grads: bool = True, threshold: float = 1e-3,
           relative: bool = True, params: dict[str, Tensor] | None = None) -> DotGraph:
    """Snapshot the graph that produced ``tensor`` (for example a loss) as a :class:`DotGraph`.

    Call it after the forward pass and *before* ``backward()``: with ``show_grads`` it
    hooks every Function's outputs, and the gradient norms fill in as backward runs. A node
    is shaded when its gradient norm is below ``threshold`` (times the largest norm in the
    graph when ``relative``). ``params`` (e.g. ``dict(model.named_parameters())``) names the
    leaf tensors. Walks the graph iteratively, so very deep graphs are fine.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(tensor).__name__}")
    snap = _Snapshot(DotGraph(threshold, relative, show_grads), params)
    if tensor.creator is None:
        snap.leaf_node(tensor)
        return snap.graph
    snap.op_node(tensor.creator)
    stack: list[Function] = [tensor.creator]
    while stack:
        fn = stack.pop()
        here = snap.fn_ids[id(fn)]
        for edge in fn.parents:
            if edge is None:
                continue
            if isinstance(edge, Tensor):
                snap.graph.edges.append((snap.leaf_node(edge), here))
                continue
            parent, _index = edge
            parent_id, new = snap.op_node(parent)
            snap.graph.edges.append((parent_id, here))
            if new:
                stack.append(parent)
    return snap.graph


class _Snapshot:
    """The nodes of a :class:`DotGraph` as :func:`to_dot` discovers them, one per leaf tensor
    and one per Function (each hooked to record its gradient norm when ``show_grads``)."""

    def __init__(self, graph: DotGraph, params: dict[str, Tensor] | None) -> None:
        self.graph = graph
        self.names = {id(t): name for name, t in (params or {}).items()}
        self.fn_ids: dict[int, str] = {}
        self.leaf_ids: dict[int, str] = {}

    def leaf_node(self, t: Tensor) -> str:
        key = id(t)
        if key not in self.leaf_ids:
            node_id = f"t{len(self.leaf_ids)}"
            self.leaf_ids[key] = node_id
            label = (self.names.get(key) or t.name
                     or ("parameter" if t.requires_grad else "constant"))
            self.graph.nodes[node_id] = _Node(node_id, "leaf", label, [t.shape], leaf=t)
        return self.leaf_ids[key]

    def op_node(self, fn: Function) -> tuple[str, bool]:
        """The node id of ``fn``, and whether it is new."""
        key = id(fn)
        if key in self.fn_ids:
            return self.fn_ids[key], False
        if "parents" not in fn.__dict__:
            raise RuntimeError(
                f"to_dot: the graph behind this tensor was freed ({type(fn).__name__} has no "
                "saved state): backward() releases it. Call to_dot before backward (it records "
                "the gradient norms as they flow), or pass retain_graph=True to backward.")
        node_id = f"f{len(self.fn_ids)}"
        self.fn_ids[key] = node_id
        node = _Node(node_id, "op", type(fn).__name__, [s for s, _ in fn.output_meta])
        self.graph.nodes[node_id] = node
        if self.graph.show_grads:
            for i in range(len(fn.output_meta)):
                fn._hooks_for(i).append(_make_hook(node))
        return node_id, True


def _make_hook(node: _Node):
    def record(g: Tensor) -> None:
        data = g.data
        xp = get_array_module(data)
        sq = float((data.astype(xp.float64) ** 2).sum())
        node.grad_sq = sq if node.grad_sq is None else node.grad_sq + sq
    return record
