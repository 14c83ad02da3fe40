"""Launch a short MPI job from a serial test: ``run_mpi(4, [sys.executable, "script.py"])``.

The job runs under ``timeout`` (and a Python-side deadline behind it), so a hung rank fails the
test instead of the suite. The ``mpiexec`` used is the one beside ``sys.executable`` (the venv's,
from the MPICH wheel) when there is one, else the first on ``PATH``.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence


@functools.lru_cache(maxsize=1)
def mpiexec() -> list[str]:
    """The launcher command, with ``--oversubscribe`` for Open MPI (MPICH needs no flag)."""
    beside = Path(sys.executable).parent / "mpiexec"
    exe = str(beside) if beside.exists() else shutil.which("mpiexec")
    if exe is None:
        raise FileNotFoundError("no mpiexec beside the interpreter nor on PATH")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return [exe, "--oversubscribe"] if "Open MPI" in version.stdout + version.stderr else [exe]


def run_mpi(n: int, args: Sequence[str], timeout: float = 120,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n n *args``; return the finished process (stdout and stderr as text).

    Exit status 124 means the job ran past ``timeout`` seconds and was killed.
    """
    # A parent that has initialised MPI (a singleton) may carry PMI settings that would make
    # the child job's ranks try to join it.
    child_env = {k: v for k, v in (env or os.environ).items() if not k.startswith(("PMI_", "PMIX_"))}
    command = ["timeout", "-k", "10", str(int(timeout)), *mpiexec(), "-n", str(n), *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env, start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            return subprocess.CompletedProcess(command, 124, out, err)
    return subprocess.CompletedProcess(command, process.returncode, out, err)
