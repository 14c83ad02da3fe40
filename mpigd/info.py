"""``mpigd info``: the software this job runs on, as one would paste it into a bug report."""

from __future__ import annotations

import os
import platform
import sys

import numba
import numpy as np

from mpigd import __version__
from mpigd.environment import THREAD_VARIABLES


def _threading_layer() -> str:
    @numba.njit(parallel=True, cache=False)
    def probe(n):
        total = 0
        for i in numba.prange(n):
            total += i
        return total

    try:
        probe(4)
        return numba.threading_layer()
    except Exception as error:  # noqa: BLE001 - report, do not fail, when no layer loads
        return f"unavailable ({error})"


def describe(comm=None) -> dict[str, str]:
    """Versions and settings, as ``mpigd info`` prints them (name -> text).

    ``comm``: a :class:`mpigd.comm.Communicator`, an ``mpi4py`` communicator, or ``None`` for every
    rank of the job (its rank count is reported, even where it is not the ``MPIGD_EXPECT_RANKS``
    of the launch: this is how to see it). Collective when ``comm`` is ``None``: the world's
    duplicate is made on first use, on every rank. Each rank describes its own process; ``mpigd
    info`` prints rank 0's.
    """
    from mpigd.comm import as_communicator, world

    comm = world(check_launch=False) if comm is None else as_communicator(comm)
    return {
        "mpigd": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "mpi library": comm.library(),
        "mpi4py": comm.mpi4py_version(),
        "ranks": str(comm.size),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba threads": str(numba.config.NUMBA_NUM_THREADS),
        "numba threading layer": _threading_layer(),
        "numba cache dir": os.environ.get("NUMBA_CACHE_DIR", "(next to the kernels)"),
        "blas/openmp threads": ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in THREAD_VARIABLES),
    }
