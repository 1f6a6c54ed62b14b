"""Argparse pieces the subcommands share: the help formatter, wrapped text, common options."""
from __future__ import annotations

import argparse
import textwrap


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples in epilogs as written (descriptions are wrapped by :func:`wrap`)."""


def wrap(text: str) -> str:
    """``text`` on lines of at most 78 characters, its own line breaks ignored."""
    return textwrap.fill(" ".join(text.split()), width=78)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda`` (default None: ``$MINIDL_DEVICE`` or cpu)."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where to train (default: $MINIDL_DEVICE or cpu)")


def add_run_options(parser: argparse.ArgumentParser, out: str, blas_threads: int,
                    blas_advice: str, resumable: bool = False) -> None:
    """``--out DIR``, ``--seed N`` and ``--blas-threads N`` of a subcommand that trains
    (``resumable``: --seed defaults to None, for a resumed run to take its checkpoint's)."""
    parser.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None if resumable else 0,
                        help="random seed (default: 0" + (", or the checkpoint's with --resume)"
                                                          if resumable else ")"))
    parser.add_argument("--blas-threads", type=int, default=blas_threads, metavar="N",
                        help=f"BLAS threads while training; 0 leaves NumPy's default. "
                             f"{blas_advice} (default: %(default)s)")


def positive_int(text: str) -> int:
    """An argparse type: an int > 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def models_help() -> str:
    """The help of a MODEL argument: where the zoo's names are listed."""
    return "a zoo model name (see `python -c 'import minidl; print(minidl.models.list_models())'`)"
