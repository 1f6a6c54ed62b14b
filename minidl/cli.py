"""The ``minidl`` command."""
from __future__ import annotations

import argparse
import platform
import sys

import numpy as np

from . import __version__
from .backend import blas_info, cupy_available, get_default_device


def _info(args: argparse.Namespace) -> int:
    print(f"minidl {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"numpy {np.__version__} (BLAS: {blas_info()})")
    print(f"default device: {get_default_device()}")
    try:
        import cupy  # noqa: PLC0415 - optional

        gpu = cupy_available()
        names = []
        if gpu:
            for i in range(cupy.cuda.runtime.getDeviceCount()):
                names.append(cupy.cuda.runtime.getDeviceProperties(i)["name"].decode())
        print(f"cupy {cupy.__version__}; GPUs: {', '.join(names) if names else 'none'}")
    except Exception:
        print("cupy: not installed (pip install 'minidl[gpu]' for the 'cuda' device)")
    print("devices: cpu" + (", cuda" if cupy_available() else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minidl", description="minidl: a deep-learning framework on NumPy and CuPy.",
        epilog="example: minidl info")
    parser.add_argument("--version", action="version", version=f"minidl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="print versions, devices and the BLAS in use",
                       description="Print the minidl, Python, NumPy/BLAS and CuPy versions and "
                       "the available devices.", epilog="example: minidl info")
    p.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minidl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
