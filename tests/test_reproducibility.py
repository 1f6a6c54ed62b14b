"""Same seed, same bits: for any MINIDL_NUM_THREADS, whatever ran before, in fresh processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl import parallel

ROOT = Path(__file__).resolve().parent.parent

# A seeded training whose ops all take the paths that used to depend on the thread count:
# convs and batch norms big enough to be cut into blocks and shared out (weight-gradient
# partial sums), a (256, 1000) @ (1000, 10) product and a bias-gradient GEMV whose bits
# differ with one or two OpenBLAS threads, and a product large enough for parallel.matmul.
TRAIN = """
import hashlib, sys
import numpy as np
import minidl as md
import minidl.functional as F
from minidl import nn, optim

def train(steps=2):
    md.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, 2048))
    head = nn.Sequential(nn.ReLU(), nn.Linear(2048, 1000), nn.Tanh(), nn.Linear(1000, 10))
    opt = optim.Adam(list(conv.parameters()) + list(head.parameters()), lr=1e-3)
    x = md.randn(256, 3, 16, 16)
    y = md.tensor(np.arange(256) % 10)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(conv(x)), y).backward()
        opt.step()
    h = hashlib.sha256()
    for p in list(conv.parameters()) + list(head.parameters()):
        h.update(p.numpy().tobytes())
    return h.hexdigest()
"""


def _python(code: str, threads: int) -> str:
    env = dict(os.environ, MINIDL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("OPENBLAS_NUM_THREADS", None)         # BLAS at its own default, as users run it
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


needs_blas_control = pytest.mark.skipif(not parallel.blas_controlled(),
                                        reason="NumPy's BLAS thread count cannot be set here")


@needs_blas_control
def test_same_seeded_training_gives_the_same_bits_for_1_2_and_8_threads():
    digests = {n: _python(TRAIN + "print(train())", n) for n in (1, 2, 8)}
    assert len(set(digests.values())) == 1, digests


@needs_blas_control
def test_what_ran_before_in_the_process_changes_nothing():
    # the repro, verbatim, then TRAIN before and after large ops on the worker
    # threads, after a thread-count switch, and after the user's own multi-threaded BLAS
    code = TRAIN + """
def run():
    md.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8*28*28, 10))
    opt = optim.Adam(m.parameters(), lr=1e-3)
    x = md.randn(32, 1, 28, 28); y = md.tensor(np.arange(32) % 10)
    for _ in range(20):
        opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
    return m[3].weight.numpy().copy()
a = run(); b = run(); t0 = train()
with md.no_grad(): nn.Conv2d(1, 8, 3)(md.randn(512, 1, 28, 28))
c = run(); t1 = train()
md.set_num_threads(1); t2 = train(); md.set_num_threads(2)
from minidl import parallel
with parallel.blas_threads(2):
    r = np.random.default_rng(0).standard_normal((512, 512)); r @ r
    t3 = train()
print(np.array_equal(a, b), np.array_equal(a, c), t0 == t1 == t2 == t3)
"""
    assert _python(code, 2) == "True True True"


@needs_blas_control
def test_minidl_ops_leave_the_users_blas_threads_alone():
    code = """
import numpy as np
import minidl as md
from minidl import nn, parallel
(get, set_), = parallel._controls()[:1]
set_(2)                                   # the user's choice (or OpenBLAS's default)
with md.no_grad():
    nn.Conv2d(1, 8, 3)(md.randn(512, 1, 28, 28))       # on the worker threads
    md.randn(2048, 2048) @ md.randn(2048, 64)           # a product split among them
print(get())
"""
    assert _python(code, 2) == "2"


def test_seeded_runs_agree_in_one_process_too(threads):
    # the cheap in-process check: same weights from one and three threads, and BLAS left as
    # it was found (no process-wide switch)
    import minidl as md
    from minidl import nn

    def forward_backward():
        md.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Flatten(),
                          nn.Linear(16 * 16 * 16, 10))
        m(md.randn(128, 3, 16, 16)).sum().backward()
        return [p.grad.numpy() for p in m.parameters()]

    before = [get() for get, _ in parallel._controls()]
    threads(1)
    one = forward_backward()
    threads(3)
    for a, b in zip(forward_backward(), one):
        np.testing.assert_array_equal(a, b)
    assert [get() for get, _ in parallel._controls()] == before
