"""The MPI library's own Allreduce, in place: the baseline every other strategy is measured against."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import register


@register("native")
class NativeAllreduce:
    """``MPI_Allreduce(MPI_IN_PLACE, buffer, MPI_SUM)``; whatever algorithm the library picks."""

    name = "native"

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm

    def allreduce(self, buffer: np.ndarray) -> None:
        if buffer.size:
            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
