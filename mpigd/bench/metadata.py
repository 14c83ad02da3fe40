"""What a benchmark result must say about where it came from: library, ranks, host, git commit."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

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
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
