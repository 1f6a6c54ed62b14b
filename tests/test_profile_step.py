"""benchmarks/profile_step.py: its table accounts for the whole step, and it leaves the
engine as it found it."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import profile_step  # noqa: E402

from minidl import autograd  # noqa: E402


def test_profile_table_sums_to_the_step_and_uninstalls():
    call, node = autograd.Function.__call__, autograd._call_backward
    text = profile_step.profile("lenet5-b64", steps=1, warmup=0, clock=time.perf_counter)
    assert autograd.Function.__call__ is call and autograd._call_backward is node
    main = text.split("Functions run inside")[0]
    rows = re.findall(r"^\| (\S+) \| (\S+) \| ([\d.]+) \| (-?[\d.]+) \|", main, re.M)
    names = {(name, phase) for name, phase, _, _ in rows}
    assert {("Conv2d", "forward"), ("Conv2d", "backward"), ("Tanh", "backward"),
            ("(engine)", "backward")} <= names
    # forward + backward nodes + engine + other is the whole step (to the rounding)
    assert abs(sum(float(r[3]) for r in rows) - 100.0) < 0.5
    assert "| Conv2dGradWeight | inside Conv2d.backward |" in text
