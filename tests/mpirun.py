"""Launch mpiexec jobs from tests: the mpiexec beside this Python, always under a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mpiexec() -> list[str]:
    """The mpiexec command, with the flags this MPI needs to run more ranks than cores."""
    beside = Path(sys.executable).parent / "mpiexec"
    exe = str(beside) if beside.exists() else shutil.which("mpiexec")
    if exe is None:
        raise RuntimeError("no mpiexec found beside the Python or on PATH")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    return [exe, "--oversubscribe"] if "Open MPI" in version else [exe]


def run_mpi(n: int, args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``args`` (a command after ``python``) on ``n`` ranks and return the finished process.

    The job is killed after ``timeout`` seconds (``subprocess.TimeoutExpired`` is raised), so a
    hang fails the test instead of stalling the suite.
    """
    env = dict(os.environ, **kwargs.pop("env", {}))
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    command = [*mpiexec(), "-n", str(n), sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=kwargs.pop("cwd", ROOT), **kwargs)


def mpigd(n: int, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m mpigd ARGS``."""
    return run_mpi(n, ["-m", "mpigd", *args], timeout=timeout, **kwargs)
