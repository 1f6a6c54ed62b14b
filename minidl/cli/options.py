"""Argparse pieces the subcommands share: the help formatter, wrapped text, --device."""
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


def models_help() -> str:
    """The help of a MODEL argument: where the zoo's names are listed."""
    return "a zoo model name (see `python -c 'import minidl; print(minidl.models.list_models())'`)"
