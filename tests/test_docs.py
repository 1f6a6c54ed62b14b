"""Every ```python block in README.md and docs/*.md runs, in order, one namespace per file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: p.name)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page.name} has no python examples")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name}, block {i} failed: {e!r}\n{code}") from e


def _modules_with_examples() -> list[str]:
    """Every minidl module whose docstrings hold a ``>>>`` example."""
    names = []
    for path in sorted((ROOT / "minidl").rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples_run(module: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``>>>`` example in the package's docstrings runs and prints what it shows."""
    import doctest
    import importlib

    import minidl as md

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    md.manual_seed(0)
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(mod, module) if t.examples]
    assert tests, f"{module} has '>>>' in its source but no doctest was found"
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_every_path_the_pages_name_exists() -> None:
    """Paths such as `minidl/nn/conv.py` or `docs/training.md` in README and docs exist."""
    path = re.compile(r"`((?:minidl|docs|tests|benchmarks|scripts)/[\w./-]+?)`")
    missing = []
    for page in PAGES:
        for found in path.findall(page.read_text(encoding="utf-8")):
            if not (ROOT / found).exists() and not (page.parent / found).exists():
                missing.append(f"{page.name}: {found}")
    assert not missing, "pages name files that do not exist:\n" + "\n".join(missing)
