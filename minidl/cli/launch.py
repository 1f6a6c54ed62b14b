"""``minidl launch -n N -- COMMAND...``: run COMMAND as N MPI ranks, with the flags this
machine needs, and print the plain ``mpiexec`` line it runs.

What it adds to ``mpiexec -n N COMMAND``: for Open MPI as root ``--allow-run-as-root``, and
``--oversubscribe`` for more ranks than cores (MPICH needs neither); core binding with
``MINIDL_NUM_THREADS`` = cores per rank (no binding when oversubscribed); abort-on-exception
by running Python commands through mpi4py's runner (a ``minidl ...`` command runs as
``python -m <runner> -m minidl.cli ...``), so an error on one rank ends the job instead of
hanging it; and ``--timeout`` as ``MINIDL_DIST_TIMEOUT``. The command line is built by
:func:`minidl.distributed.launcher.mpiexec_command`.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from typing import Any

from ..distributed.launcher import mpiexec_command
from .options import Formatter, positive_int

__all__ = ["add_parser", "run"]


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
