"""``minidl launch -n N -- COMMAND...``: run COMMAND as N MPI ranks, with the flags this
machine needs, and print the plain ``mpiexec`` line it runs.

What it adds to ``mpiexec -n N COMMAND``: for Open MPI as root ``--allow-run-as-root``, and
``--oversubscribe`` for more ranks than cores (MPICH needs neither); core binding with
``MINIDL_NUM_THREADS`` = cores per rank (no binding when oversubscribed); abort-on-exception
by running Python commands through ``python -m mpi4py`` (a ``minidl ...`` command becomes
``python -m mpi4py -m minidl.cli ...``), so an error on one rank ends the job instead of hanging
it; and ``--timeout`` as ``MINIDL_DIST_TIMEOUT``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from functools import cache
from typing import Any

from .options import Formatter, positive_int

__all__ = ["mpiexec_command", "mpi_flavour", "add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "launch", formatter_class=Formatter,
        help="run a command as N MPI ranks (data-parallel training)",
        description="Run COMMAND as N MPI ranks through mpiexec, adding the flags this "
                    "machine needs (root/oversubscribe for Open MPI, core binding, "
                    "MINIDL_NUM_THREADS = cores per rank, abort on exception), and print the "
                    "plain mpiexec line it runs. See docs/distributed.md.",
        epilog="examples:\n"
               "  minidl launch -n 2 -- python train.py\n"
               "  minidl launch -n 4 -- minidl train cifar_resnet20 --epochs 1")
    p.add_argument("-n", "--np", dest="n", type=positive_int, required=True,
                   help="number of ranks")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="MINIDL_NUM_THREADS per rank (default: cores // ranks, at least 1)")
    p.add_argument("--no-bind", action="store_true", help="do not bind ranks to cores")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds a collective may wait before the job aborts "
                        "(MINIDL_DIST_TIMEOUT; default 300)")
    p.add_argument("--dry-run", action="store_true", help="print the mpiexec line only")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=run)


@cache
def mpi_flavour(mpiexec: str) -> str:
    """'openmpi', 'mpich' (MPICH, Intel MPI: Hydra) or 'unknown', from ``mpiexec --version``."""
    try:
        text = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "Open MPI" in text or "OpenRTE" in text:
        return "openmpi"
    return "mpich" if "HYDRA" in text.upper() or "MPICH" in text.upper() else "unknown"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _abort_on_exception(command: list[str]) -> list[str]:
    """Python commands run under ``python -m mpi4py`` (MPI_Abort on an uncaught exception)."""
    first = os.path.basename(command[0])
    if first == "minidl":
        return [sys.executable, "-m", "mpi4py", "-m", "minidl.cli", *command[1:]]
    if first.startswith("python") and command[1:3] != ["-m", "mpi4py"]:
        return [command[0], "-m", "mpi4py", *command[1:]]
    return list(command)


def mpiexec_command(n: int, command: list[str], threads: int | None = None, bind: bool = True,
                    timeout: float | None = None, mpiexec: str | None = None,
                    abort_on_exception: bool = True) -> tuple[list[str], dict[str, str]]:
    """The argv that runs ``command`` as ``n`` ranks, and the variables it sets in every
    rank's environment (already among the argv's flags, listed for the caller to show).
    ``abort_on_exception=False`` leaves the command as it is (no ``-m mpi4py``)."""
    if not command:
        raise ValueError("minidl launch: no command given; write minidl launch -n N -- COMMAND")
    exe = mpiexec or shutil.which("mpiexec") or shutil.which("mpirun")
    if exe is None:
        raise RuntimeError("minidl launch: mpiexec not found; pip install 'minidl[mpi]' "
                           "(mpi4py and an MPI library)")
    cores = _cores()
    per_rank = threads or max(1, cores // n)
    bind = bind and n * per_rank <= cores
    env = {"MINIDL_NUM_THREADS": str(per_rank)}
    if timeout is not None:
        env["MINIDL_DIST_TIMEOUT"] = f"{timeout:g}"
    argv = [exe, "-n", str(n)]
    if mpi_flavour(exe) == "openmpi":
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv.append("--allow-run-as-root")
        if n > cores:
            argv.append("--oversubscribe")
        if bind:
            argv += ["--map-by", f"slot:PE={per_rank}", "--bind-to", "core"]
        else:
            argv += ["--bind-to", "none"]
        for k, v in env.items():
            argv += ["-x", f"{k}={v}"]
    else:   # Hydra (MPICH, Intel MPI); other launchers get Hydra's spelling too
        if bind:
            argv += ["-bind-to", f"core:{per_rank}" if per_rank > 1 else "core"]
        for k, v in env.items():
            argv += ["-genv", k, v]
    return argv + (_abort_on_exception(command) if abort_on_exception else list(command)), env


def run(args: argparse.Namespace) -> int:
    """Run the command as ``args.n`` ranks; exit code: mpiexec's."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        argv, _ = mpiexec_command(args.n, command, args.threads, not args.no_bind, args.timeout)
    except (ValueError, RuntimeError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f"minidl launch: {shlex.join(argv)}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(argv).returncode
