"""What a benchmark result must say about where it came from: library, ranks, host, git commit."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy

from mpigd import __version__


def git_commit(start: Path | None = None) -> str | None:
    """The commit checked out around ``start`` (this package by default), or ``None``.

    Read from the files under ``.git`` rather than by running ``git``: forking inside an MPI
    rank is unsafe on some fabrics. Handles worktrees (``.git`` a file) and packed refs.
    """
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        dot_git = folder / ".git"
        if dot_git.exists():
            break
    else:
        return None
    try:
        git_dir = dot_git
        if dot_git.is_file():
            git_dir = (folder / dot_git.read_text().split("gitdir:", 1)[1].strip()).resolve()
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(None, 1)[1]
        for base in (git_dir, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except (OSError, IndexError):
        return None
    return None


def timestamp() -> str:
    """Now, as the ``date`` of every result's metadata (ISO 8601, with the UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_metadata(comm, **extra: Any) -> dict[str, Any]:
    """Library, versions, ranks, host, time and commit; ``comm`` is a :class:`mpigd.comm.Communicator`."""
    return {
        "mpi_library": comm.library(),
        "mpi4py": comm.mpi4py_version(),
        "ranks": comm.size,
        "hostname": platform.node(),
        "mpigd": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "command": " ".join(sys.argv),
        "date": timestamp(),
        **extra,
    }


def cpu_model() -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (the processor string where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas() -> str:
    """The BLAS NumPy was built against, as NumPy reports it."""
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older NumPy has no dict mode; the field is informative only
        return "unknown"


def describe() -> dict[str, object]:
    """Versions, CPU, thread settings, commit and date, for the ``metadata`` of a JSON result."""
    return {
        "mpigd": __version__,
        "git_commit": git_commit(),
        "date": timestamp(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "blas": blas(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
    }
