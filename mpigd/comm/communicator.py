"""The small communicator the rest of mpigd talks to: nothing outside ``mpigd.comm`` sees mpi4py."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import Strategy, make_strategy
from mpigd import errors
from mpigd.errors import MpigdError

T = TypeVar("T")


class Communicator:
    """Rank, size and the collectives mpigd needs, over one ``mpi4py`` communicator.

    Sums go through the named allreduce strategy; the time they take and the bytes they move are
    counted in :attr:`comm_seconds` and :attr:`bytes_reduced` (:meth:`allgather`'s in
    :attr:`comm_seconds` and :attr:`bytes_gathered`).

    Parameters
    ----------
    mpi_comm
        The communicator to use. It is used as given: duplicate ``COMM_WORLD`` before passing it
        (see :func:`mpigd.comm.world`) so that our messages never meet a user's.
    strategy
        Name of the allreduce strategy for :meth:`allreduce`.
    tune_file
        Calibration file for ``auto`` (``None``: the environment, the default path, or defaults).
    """

    def __init__(self, mpi_comm: MPI.Comm, strategy: str = "native", tune_file: str | None = None) -> None:
        self.mpi_comm = mpi_comm
        self.rank: int = mpi_comm.Get_rank()
        self.size: int = mpi_comm.Get_size()
        self.tune_file = tune_file
        self.strategy: Strategy = make_strategy(strategy, mpi_comm, tune_file)
        self.comm_seconds = 0.0
        self.bytes_reduced = 0
        self.allreduce_calls = 0
        self.bytes_gathered = 0

    # -- sums on the hot path ------------------------------------------------------------------
    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across all ranks with the chosen strategy. Collective."""
        start = time.perf_counter()
        self.strategy.allreduce(buffer)
        self.comm_seconds += time.perf_counter() - start
        self.bytes_reduced += buffer.nbytes
        self.allreduce_calls += 1

    def count_unsent(self, calls: int, nbytes: int) -> None:
        """Count ``calls`` sums of ``nbytes`` bytes each that one rank made without a message (its
        kernels took the steps), as :meth:`allreduce` would have counted them."""
        self.allreduce_calls += calls
        self.bytes_reduced += calls * nbytes

    def allgather(self, message: np.ndarray, gathered: np.ndarray) -> None:
        """Every rank's ``message`` into row ``rank`` of ``gathered`` (``size`` rows of its length) on
        every rank, with MPI's Allgather. Collective."""
        start = time.perf_counter()
        self.mpi_comm.Allgather(message, gathered)
        self.comm_seconds += time.perf_counter() - start
        self.bytes_gathered += gathered.nbytes

    @property
    def strategy_label(self) -> str:
        """The strategy that actually ran: its name, or e.g. ``auto->ring`` for ``auto``."""
        return self.strategy.describe()

    def with_strategy(self, strategy: str, tune_file: str | None = None) -> "Communicator":
        """Another Communicator on the same ranks and MPI communicator, summing with ``strategy``.

        ``tune_file`` replaces this one's calibration when given. Collective (``auto`` and
        ``ring`` agree on a calibration when built).
        """
        return Communicator(self.mpi_comm, strategy, tune_file or self.tune_file)

    def allreduce_max(self, buffer: np.ndarray) -> None:
        """Element-wise maximum of ``buffer`` in place across all ranks. Collective."""
        if buffer.size and self.size > 1:  # one rank: the buffer is its own maximum
            self.mpi_comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.MAX)

    def allreduce_min(self, buffer: np.ndarray) -> None:
        """Element-wise minimum of ``buffer`` in place across all ranks. Collective."""
        if buffer.size and self.size > 1:  # one rank: the buffer is its own minimum
            self.mpi_comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.MIN)

    def broadcast(self, buffer: np.ndarray, root: int = 0) -> None:
        """Copy ``buffer`` from ``root`` to every rank, in place. Collective."""
        if buffer.size:
            self.mpi_comm.Bcast(buffer, root=root)

    def barrier(self) -> None:
        """Wait until every rank arrives. Collective."""
        self.mpi_comm.Barrier()

    def wtime(self) -> float:
        """MPI's wall clock, in seconds."""
        return MPI.Wtime()

    # -- agreeing on failure -------------------------------------------------------------------
    def agree(self, error: MpigdError | None) -> None:
        """Raise the same error on every rank if any rank passes one. Collective.

        The error of the lowest failing rank wins; its message travels as bytes (no pickle), and
        its class is kept when it is one of mpigd's own. Call this after every step whose failure
        could differ between ranks (reading one's own rows, say) so that all ranks stop together.
        """
        first = np.array([self.rank if error is not None else self.size], dtype=np.int64)
        self.allreduce_min(first)
        culprit = int(first[0])
        if culprit == self.size:
            return
        kinds = errors.KINDS
        code = np.array([kinds.index(type(error)) if type(error) in kinds else 0], dtype=np.int64)
        message = np.frombuffer(str(error).encode(), dtype=np.uint8) if error is not None else None
        length = np.array([0 if message is None else message.size], dtype=np.int64)
        self.broadcast(code, root=culprit)
        self.broadcast(length, root=culprit)
        text = message.copy() if self.rank == culprit else np.empty(int(length[0]), np.uint8)
        self.broadcast(text, root=culprit)
        raise kinds[int(code[0])](text.tobytes().decode())

    def together(self, step: Callable[..., T], *args: object) -> T:
        """Run ``step(*args)`` on every rank; if it raises an :class:`MpigdError` on any rank, raise
        that error (the lowest failing rank's) on every rank. Collective."""
        result, error = None, None
        try:
            result = step(*args)
        except MpigdError as caught:
            error = caught
        self.agree(error)
        return result  # type: ignore[return-value]

    def rank_values(self, value: int) -> np.ndarray:
        """Every rank's ``value``, in rank order, from one allreduce in which each rank fills only
        its own slot (no allgather needed). Collective."""
        values = np.zeros(self.size, dtype=np.int64)
        values[self.rank] = value
        # Counts are never negative, so a maximum gives the same as a sum; it also keeps these
        # start-up reductions out of the training run's allreduce statistics.
        self.allreduce_max(values)
        return values

    def abort(self, code: int = 1) -> None:
        """End the whole job now, from this rank alone: no other rank is left waiting."""
        from mpigd.comm.failure import abort_job

        abort_job(code, self.mpi_comm)

    def library(self) -> str:
        """The MPI library's name and version, in one line."""
        return " ".join(MPI.Get_library_version().strip().splitlines()[0].split())

    def mpi4py_version(self) -> str:
        import mpi4py

        return mpi4py.__version__

    def split(self, colour: int) -> "Communicator":
        """A communicator of the ranks that pass the same ``colour``, in this one's rank order. Collective."""
        return Communicator(self.mpi_comm.Split(colour, self.rank), self.strategy.name, self.tune_file)

    def sub(self, ranks: int) -> "Communicator | None":
        """A communicator of the first ``ranks`` ranks (``None`` on the others). Collective."""
        colour = 0 if self.rank < ranks else MPI.UNDEFINED
        sub = self.mpi_comm.Split(colour, self.rank)
        return None if sub == MPI.COMM_NULL else Communicator(sub, self.strategy.name, self.tune_file)

