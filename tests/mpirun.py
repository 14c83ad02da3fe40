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


def _launch(n: int, args: list[str], kwargs: dict) -> tuple[list[str], dict]:
    """The mpiexec command line for ``args`` on ``n`` ranks, and the keyword arguments for subprocess."""
    env = dict(os.environ, **kwargs.pop("env", {}))
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return [*mpiexec(), "-n", str(n), sys.executable, *args], dict(kwargs, env=env, cwd=kwargs.get("cwd", ROOT))


def run_mpi(n: int, args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``args`` (a command after ``python``) on ``n`` ranks and return the finished process.

    The job is killed after ``timeout`` seconds (``subprocess.TimeoutExpired`` is raised), so a
    hang fails the test instead of stalling the suite.
    """
    command, options = _launch(n, args, kwargs)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)


def start_mpi(n: int, args: list[str], **kwargs) -> subprocess.Popen:
    """Start ``args`` on ``n`` ranks without waiting (its own session, output piped); the caller
    must end it with ``communicate(timeout=...)`` and kill it on timeout."""
    command, options = _launch(n, args, kwargs)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **options)


def mpigd(n: int, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m mpigd ARGS``."""
    return run_mpi(n, ["-m", "mpigd", *args], timeout=timeout, **kwargs)


def refused_in_one_line(job: subprocess.CompletedProcess, words: str) -> None:
    """Exit 2 with exactly one error line (printed by rank 0 only, no traceback) that contains ``words``."""
    lines = job.stderr.strip().splitlines()
    assert job.returncode == 2, job.stderr
    assert len(lines) == 1 and lines[0].startswith("mpigd: error: ") and words in lines[0], job.stderr
    assert "Traceback" not in job.stderr
