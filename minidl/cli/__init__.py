"""The ``minidl`` command: ``demo``, ``train``, ``train-gan``, ``summary``, ``flow``, ``lab``,
``info``, ``launch``.

One module per subcommand, each with ``add_parser(subparsers)`` and ``run(args) -> exit
code``. Every subcommand imports what it needs when it runs, so ``minidl --help`` stays
instant.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from . import demo, flow, gan, info, lab, launch, summary, train
from .options import Formatter

# in the order ``minidl --help`` lists them
COMMANDS = (gan, flow, lab, demo, train, summary, info, launch)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minidl`` command (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="minidl", formatter_class=Formatter,
        description="minidl: a deep-learning framework on NumPy and CuPy.\n"
                    "Run `minidl COMMAND --help` for the options of each command.",
        epilog="examples:\n"
               "  minidl demo                      # LeNet-5 on MNIST digits, under a minute\n"
               "  minidl train lenet5 --epochs 5   # the same, with every knob exposed\n"
               "  minidl summary resnet18 --input 3,224,224\n"
               "  minidl info\n\n"
               "A mistake in the arguments prints one line and exits with status 2\n"
               "(MINIDL_TRACEBACK=1 prints the traceback instead).")
    parser.add_argument("--version", action="version", version=f"minidl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minidl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, MemoryError, OSError) as e:
        # A mistake in the arguments or the data: the one-line message, not a traceback
        # (MINIDL_TRACEBACK=1 shows it, for debugging minidl itself).
        if os.environ.get("MINIDL_TRACEBACK", "") not in ("", "0"):
            raise
        print(f"minidl {args.command}: {one_line(e, args.command)}", file=sys.stderr)
        return 2


def one_line(e: BaseException, command: str = "") -> str:
    """An exception as the line the command prints: its message (KeyError's unquoted, a
    leading ``COMMAND:`` dropped as the prefix says it), or its type when it has none."""
    text = (str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)).strip()
    if command and text.startswith(f"{command}: "):
        text = text[len(command) + 2:]
    return text or type(e).__name__
