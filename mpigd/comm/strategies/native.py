"""The MPI library's own Allreduce, in place: the baseline every other strategy is measured against.

Whether it gives every rank the same bits is the library's business: MPICH 5.0.2 did at 1 to 8
ranks in our tests (``tests/test_allreduce_mpi.py`` checks it), but the MPI standard only
advises it, and a plain Allreduce gives different bits for different rank counts.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import register


_IN_PLACE = MPI.IN_PLACE
_SUM = MPI.SUM


@register("native")
class NativeAllreduce:
    """``MPI_Allreduce(MPI_IN_PLACE, buffer, MPI_SUM)``; whatever algorithm the library picks."""

    name = "native"

    def __init__(self, comm: MPI.Comm, tune_file: str | None = None) -> None:
        self.comm = comm
        self._allreduce = comm.Allreduce  # bound once: a small message costs ~1.5 us in all
        # On one rank the sum is the buffer itself. MPI's call still cost ~1.4 us, a tenth of an
        # SGD step of one row (benchmarks/RESULTS.md, *Mini-batch SGD against scikit-learn*).
        self._alone = comm.Get_size() == 1

    def describe(self) -> str:
        """The strategy that ran: this one."""
        return self.name

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across the communicator. Collective."""
        if buffer.size and not self._alone:
            self._allreduce(_IN_PLACE, buffer, _SUM)
