"""The package's layering (DESIGN.md): no import runs upward or in a cycle, deferred or not.

Every ``import`` statement of every module is read with ``ast`` (imports inside functions
included) and resolved to the minidl module it names. A module may import from a lower layer
and from its own package; cycles between modules are refused everywhere. Only
``minidl/backend.py`` may name cupy, and only ``minidl/distributed/`` may name mpi4py.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minidl"

# DESIGN.md: backend, parallel -> autograd -> kernels, functional -> nn -> optim, data, io ->
# distributed -> train, summary -> keras -> models -> flow, viz -> cli. The root package is
# the public surface: it may expose anything (lazily), and what it imports eagerly is the engine.
LAYERS = [
    {"backend", "parallel"},
    {"autograd"},
    {"gradcheck", "factories", "kernels"},
    {"functional"},
    {"nn"},
    {"optim", "data", "io"},
    {"distributed"},
    {"train", "summary"},
    {"keras"},
    {"models"},
    {"flow", "viz"},
    {"cli"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# `import minidl` reaches every layer through the root's lazy attributes (md.train, ...), so
# only the top layer may import the root package itself.
ROOT_RANK = RANK["cli"] - 1


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").exists() or \
        (PACKAGE.parent / rel / "__init__.py").exists()


def _imports(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """(line, minidl module) for every import of ``path`` (module ``name``), relative ones
    resolved."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        dynamic = _import_module_target(node, package)
        if dynamic:
            found.append((node.lineno, dynamic))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else module))
    return found


def _import_module_target(node: ast.AST, package: str) -> str | None:
    """The module of an ``importlib.import_module("...")`` call with constant arguments."""
    if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id",
                                                                              None))
            == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    name = str(node.args[0].value)
    if not name.startswith("."):
        return name
    anchor = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1],
                                                                     ast.Constant) else package
    dots = len(name) - len(name.lstrip("."))
    base = str(anchor).split(".")
    return ".".join(base[:len(base) - dots + 1] + [name.lstrip(".")])


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _unit(module: str) -> str | None:
    """The layer unit of a minidl module ('nn' for minidl.nn.conv); None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _rank(module: str) -> int:
    unit = _unit(module)
    if unit is None:
        return ROOT_RANK
    if unit not in RANK:
        raise AssertionError(f"{module} belongs to no layer of DESIGN.md; add it to LAYERS")
    return RANK[unit]


def test_every_module_belongs_to_a_layer():
    for module in _all_modules():
        if module != "minidl":
            _rank(module)


def test_no_import_runs_upward():
    bad = []
    for module, path in _all_modules().items():
        if module == "minidl":
            continue
        for line, target in _imports(path):
            if target != "minidl" and not target.startswith("minidl."):
                continue
            same_unit = _unit(target) == _unit(module)
            if not same_unit and _rank(target) >= _rank(module):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not bad, "imports that run upward or sideways (DESIGN.md layering):\n" + "\n".join(bad)


def _find_cycles(graph: dict[str, list[str]]) -> list[str]:
    """Every cycle a depth-first walk of ``graph`` (module -> modules it imports) closes."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles():
    modules = _all_modules()
    graph = {m: sorted({t for _, t in _imports(p) if t in modules and t != m})
             for m, p in modules.items()}
    cycles = _find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_finder_sees_a_submodule_importing_its_package():
    graph = {"minidl.models": ["minidl.models.transfer"],
             "minidl.models.transfer": ["minidl.models"], "minidl.nn": ["minidl.nn.conv"]}
    assert _find_cycles(graph) == ["minidl.models -> minidl.models.transfer -> minidl.models"]
    assert _find_cycles({"a": ["b"], "b": ["c"], "c": []}) == []


@pytest.mark.parametrize("library, allowed", [("cupy", ("minidl.backend",)),
                                              ("cupyx", ("minidl.backend",)),
                                              ("mpi4py", ("minidl.distributed",))])
def test_optional_libraries_are_named_in_one_place(library, allowed):
    bad = []
    for module, path in _all_modules().items():
        if any(module == a or module.startswith(a + ".") for a in allowed):
            continue
        source = path.read_text(encoding="utf-8")
        for line, target in _imports(path):
            if target == library or target.startswith(library + "."):
                bad.append(f"{module}:{line}")
        for node in ast.walk(ast.parse(source)):   # sys.modules["cupy"], find_spec("cupy"), ...
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.split(".")[0] == library:
                bad.append(f"{module}:{node.lineno} (the string {node.value!r})")
    assert not bad, f"{library} is imported outside {allowed}: {bad}"


def test_the_checker_sees_deferred_and_relative_imports(tmp_path):
    """The walker must find an upward import hidden inside a function (or it checks nothing)."""
    imports = dict((t, line) for line, t in _imports(PACKAGE / "__init__.py"))
    assert "minidl.autograd" in imports and "minidl.functional" in imports
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\n"
                     "def f():\n    from ..train import Trainer\n    from . import module\n"
                     "    import minidl as md\n    importlib.import_module('minidl.keras')\n"
                     "    importlib.import_module('.optim', 'minidl')\n")
    found = sorted(t for _, t in _imports(probe, "minidl.nn.probe"))
    assert found == ["importlib", "minidl", "minidl.keras", "minidl.nn.module", "minidl.optim",
                     "minidl.train"]
    assert all(_rank(t) > RANK["nn"] for t in ("minidl", "minidl.keras", "minidl.train"))
