"""A benchmark's ``--threads N``, applied to the BLAS and OpenMP variables before NumPy loads.

NumPy's BLAS reads ``OPENBLAS_NUM_THREADS`` (and its kin) once, when it is loaded, so a
script must set them before its first ``import numpy``: it imports this module first and
calls :func:`apply_threads` (``--threads 2`` and ``--threads=2`` both read as 2).
"""
from __future__ import annotations

import os
import sys

VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_from_argv(argv: list[str] | None = None) -> int | None:
    """The value of ``--threads N`` or ``--threads=N`` in ``argv`` (sys.argv), or None."""
    argv = sys.argv if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return None


def apply_threads(minidl_too: bool = False) -> int | None:
    """Set the thread variables from ``--threads`` (and ``MINIDL_NUM_THREADS`` if asked);
    returns the count, or None when the option is absent."""
    threads = threads_from_argv()
    if threads:
        for var in VARIABLES + (("MINIDL_NUM_THREADS",) if minidl_too else ()):
            os.environ[var] = str(threads)
    return threads
