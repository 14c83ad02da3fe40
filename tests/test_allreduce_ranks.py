"""The MPI allreduce tests at rank counts ``run/test`` does not launch itself (1, 3, 5, 8).

Each count runs ``tests/test_allreduce_mpi.py`` under its own ``mpiexec``; 5 and 8 ranks are
oversubscribed on a small machine, which MPICH allows without a flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mpirun import run_mpi

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 3, 5, 8])
def test_allreduce_strategies_at(ranks: int):
    process = run_mpi(ranks, ["-m", "pytest", "-q", "--with-mpi", "-m", "mpi", "-p", "no:cacheprovider",
                              str(HERE / "test_allreduce_mpi.py")], timeout=180)
    assert process.returncode == 0, (f"exit {process.returncode} on {ranks} ranks\n"
                                     f"{process.stdout[-4000:]}\n{process.stderr[-4000:]}")
