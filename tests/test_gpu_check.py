"""scripts/gpu_check.py works before a GPU sees it: its --dry-run plumbing on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


def test_dry_run_writes_a_complete_report(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), str(tmp_path),
                          "--dry-run"], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    result = json.loads((tmp_path / "report.json").read_text())
    assert result["crashed"] == {}
    assert result["tests"]["tests"] > 0 and result["tests"]["failed"] == []
    ops = result["parity"]["ops"]
    assert {r["op"] for r in ops} == set(gpu_check.OPS)
    assert all(r["ok"] for r in ops), [r for r in ops if not r["ok"]]
    assert {r["model"] for r in result["parity"]["training"]} == {"lenet5", "cifar_resnet20"}
    assert all(r["ok"] for r in result["parity"]["training"])
    assert all(r["ms"] > 0 for r in result["tables"]["kernels"])
    assert result["tables"]["steps"][0]["minidl_ms"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "## CUDA against CPU" in report and "## Whole training steps" in report


def test_junit_summary_lists_failures_and_counts(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2'
        '&#10;more"/></testcase>'
        '<testcase classname="tests.test_b" name="test_err"><error message="boom"/></testcase>'
        '<testcase classname="tests.test_b" name="test_gpu"><skipped message="no gpu"/>'
        '</testcase></testsuite></testsuites>')
    got = gpu_check._junit_summary(xml)
    assert (got["tests"], got["passed"], got["failures"], got["errors"], got["skipped"]) == \
        (4, 1, 1, 1, 1)
    assert got["failed"] == ["tests.test_a::test_bad: assert 1 == 2",
                             "tests.test_b::test_err: boom"]


def test_a_wrong_or_crashing_op_is_reported_not_hidden(monkeypatch) -> None:
    """The second run of each case stands in for the GPU: if it differs, the row fails."""
    calls = []

    def drifting(a):
        calls.append(1)
        return a * (1.01 if len(calls) % 2 == 0 else 1.0)

    def crashing(a):
        raise ValueError("no kernel for this")

    monkeypatch.setattr(gpu_check, "OPS", {
        "drifting": (drifting, [gpu_check._normal((3,))], [True]),
        "crashing": (crashing, [gpu_check._normal((3,))], [True])})
    rows = gpu_check.op_parity("cpu")
    assert [(r["op"], r["ok"]) for r in rows] == [("drifting", False)] * 2 + [("crashing", False)] * 2
    assert rows[0]["rel_err"] > 1e-3
    assert rows[2]["error"] == "ValueError: no kernel for this"
    # and a failed row makes the whole check fail
    assert gpu_check._failures({"parity": {"ops": rows, "training": []}}) == 4
    assert gpu_check._failures({"tests": {"failures": 1, "errors": 0, "exit": 1}}) == 2
    ok = {"tests": {"failures": 0, "errors": 0, "exit": 0},
          "parity": {"ops": [{"ok": True}], "training": [{"ok": True}]}}
    assert gpu_check._failures(ok) == 0
