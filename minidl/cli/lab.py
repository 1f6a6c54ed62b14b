"""``minidl lab NAME``: run one of the lectures' labs, print its table, write its PNG."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lab`` with one sub-command per lab (``minidl.flow.labs.LABS``) to ``subparsers``.

    Each sub-command sets ``func`` (``args.func(args)`` returns an exit code).
    """
    from ..flow.labs import LABS  # noqa: PLC0415 - a table only: the labs load when one runs

    lab = subparsers.add_parser(
        "lab", help="the lectures' labs: run one, print its table, write its PNG",
        description="The lectures' experiments beyond gradient flow (see docs/labs.md). Each "
        "prints its table and writes a PNG with a title, axis labels and a legend (needs "
        "matplotlib); --quick runs a small version in seconds.",
        epilog="example: minidl lab normalization --quick --out norm.png")
    sub = lab.add_subparsers(dest="lab", metavar="NAME")
    sub.required = True
    for name, (_, text) in LABS.items():
        p = sub.add_parser(name, help=text, description=text,
                           epilog=f"example: minidl lab {name} --out {name}.png")
        p.add_argument("--quick", action="store_true",
                       help="a small version that runs in seconds")
        p.add_argument("--out", default=f"lab-{name}.png",
                       help="PNG to write (default: %(default)s); what the lab caches for "
                       "repeats goes beside it")
        p.add_argument("--csv", default=None, help="also write the table as CSV here")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        p.add_argument("--no-plot", action="store_true", help="print the table only")
        p.set_defaults(func=run, lab=name)
    return lab


def run(args: argparse.Namespace) -> int:
    """Run ``args.lab``, print its table, write the PNG (and CSV); exit code 0."""
    from ..flow.labs import get_lab  # noqa: PLC0415

    start = time.perf_counter()
    out = Path(args.out)
    result = get_lab(args.lab)(quick=args.quick, seed=args.seed, cache_dir=out.parent)
    print(result.table())
    if args.csv:
        print(f"wrote {result.to_csv(args.csv)}")
    if not args.no_plot:
        try:
            print(f"wrote {result.plot(out)}")
        except ImportError as e:
            print(f"no figure: {e}")
    print(f"{args.lab}: {time.perf_counter() - start:.1f} s")
    return 0
