"""``minidl info``: the versions, the BLAS and the devices."""
from __future__ import annotations

import argparse
import platform
from typing import Any

import numpy as np

from .. import __version__
from ..backend import blas_info, cupy_available, cupy_info, get_default_device
from .options import Formatter


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser("info", formatter_class=Formatter,
                              help="print versions, devices and the BLAS in use",
                              description="Print the minidl, Python, NumPy/BLAS and CuPy "
                              "versions and the available devices.",
                              epilog="example:\n  minidl info")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the versions and devices; exit code 0."""
    print(f"minidl {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"numpy {np.__version__} (BLAS: {blas_info()})")
    print(f"default device: {get_default_device()}")
    version, names = cupy_info()
    if version is None:
        print("cupy: not installed (pip install 'minidl[gpu]' for the 'cuda' device)")
    else:
        print(f"cupy {version}; GPUs: {', '.join(names) if names else 'none'}")
    print("devices: cpu" + (", cuda" if cupy_available() else ""))
    _print_distributed()
    return 0


def _print_distributed() -> None:
    """MPI (mpi4py and its library) and NCCL, for data-parallel training."""
    from ..distributed import mpi_available  # noqa: PLC0415
    from ..distributed.nccl import nccl_version  # noqa: PLC0415

    mpi4py_version, library = mpi_available()
    if mpi4py_version is None:
        print("mpi: not installed (pip install 'minidl[mpi]' for minidl launch / mpiexec)")
    else:
        print(f"mpi: mpi4py {mpi4py_version}; {library}")
    nccl = nccl_version() if cupy_available() else None
    print(f"nccl: {nccl}" if nccl is not None else "nccl: not available (GPU runs: pip install "
          "nvidia-nccl-cu12)")
