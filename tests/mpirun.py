"""Launch ``mpiexec`` jobs from the tests, always under a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Sequence


def mpiexec() -> str:
    """The mpiexec beside this interpreter (the MPICH wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else "mpiexec"


def _is_open_mpi(exe: str) -> bool:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out.stdout + out.stderr


def run_mpi(n: int, args: Sequence[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n n python ARGS`` and return the finished process (text output captured).

    ``--oversubscribe`` is added for Open MPI only (MPICH runs more ranks than cores as is).
    A job that outlives ``timeout`` seconds raises :class:`subprocess.TimeoutExpired`.
    """
    exe = mpiexec()
    command = [exe, "-n", str(n)]
    env = dict(kw.pop("env", None) or os.environ)
    if _is_open_mpi(exe):
        command.append("--oversubscribe")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(command + [sys.executable, *args], timeout=timeout, env=env, **kw)
