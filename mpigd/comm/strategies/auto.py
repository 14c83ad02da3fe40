"""``auto``: per message size, the strategy the calibration found fastest on this communicator.

The crossover table comes from the tune file (``mpigd tune``) when there is one, else from the
cost model with built-in parameters (ring against recursive doubling). It is read once, by rank
0, and broadcast (:mod:`.calibration`), so every rank holds the same table and always picks the
same strategy: a different choice on two ranks would deadlock. The per-call choice is a binary
search in it.
"""

from __future__ import annotations

import bisect

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import make_strategy, register
from mpigd.comm.strategies.calibration import CANDIDATES, agreed_calibration
from mpigd.comm.strategies.ring import SEGMENT_BYTES, RingAllreduce


@register("auto")
class AutoAllreduce:
    """Dispatch each call to native, ring, direct or tree by its size in bytes, from a crossover table.

    Built collectively (rank 0 reads the tune file and broadcasts the table). Deterministic
    wherever the strategies it picks are: the choice depends on the size alone.

    Parameters
    ----------
    comm
        The communicator to reduce over.
    tune_file
        A file written by ``mpigd tune``; ``None`` looks at ``$MPIGD_TUNE_FILE``, then at the
        default path of :func:`mpigd.comm.tuning.default_path`, then uses built-in defaults.
    """

    name = "auto"

    def __init__(self, comm: MPI.Comm, tune_file: str | None = None) -> None:
        self.comm = comm
        calibration = agreed_calibration(comm, tune_file, "auto")
        table = self.crossover = calibration.crossover
        self._bounds = list(table.bounds)
        self._candidates = candidates(comm, calibration.ring_segment_bytes)
        self._index = [CANDIDATES.index(name) for name in table.choices]
        self._largest = [0] * len(CANDIDATES)  # the largest message each has run, 0: none
        self._last_buffer: np.ndarray | None = None
        self._last_run = self._candidates[0].allreduce

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place with the strategy chosen for its size. Collective."""
        # A trainer reduces the same arrays step after step: for the array of the last call the
        # choice stands (an array's size cannot change while we hold it), and the whole cost of
        # auto is one identity test, ~50 ns on a 1.5 us small-message allreduce.
        if buffer is not self._last_buffer:
            self._select(buffer)
        self._last_run(buffer)

    def _select(self, buffer: np.ndarray) -> None:
        nbytes = buffer.nbytes
        which = self._index[bisect.bisect_left(self._bounds, nbytes)]
        self._largest[which] = max(self._largest[which], nbytes or 1)
        self._last_buffer = buffer
        self._last_run = self._candidates[which].allreduce

    def describe(self) -> str:
        """What ran, e.g. ``auto->ring``, or ``auto->ring+tree`` (the one for the largest message first)."""
        ran = sorted((n for n in range(len(CANDIDATES)) if self._largest[n]), key=lambda n: -self._largest[n])
        return self.name + ("->" + "+".join(CANDIDATES[n] for n in ran) if ran else "")

    def choose(self, nbytes: int) -> str:
        """The strategy a message of ``nbytes`` would run, without running it."""
        return CANDIDATES[self._index[bisect.bisect_left(self._bounds, nbytes)]]


def candidates(comm: MPI.Comm, ring_segment_bytes: int | None) -> list:
    """The strategies of :data:`CANDIDATES`, in that order, the ring with ``ring_segment_bytes``
    (``None``: its default). Collective. No tune file is read: the caller has the calibration."""
    return [RingAllreduce(comm, segment_bytes=ring_segment_bytes or SEGMENT_BYTES) if name == "ring"
            else make_strategy(name, comm) for name in CANDIDATES]
