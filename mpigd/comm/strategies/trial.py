"""Timing interchangeable ways of summing one message, in the launch itself, to run the fastest.

``auto`` tries strategies that give the same bits, the ring tries cutting a large message into
cache-sized blocks (which gives the same bits too). Both time on the caller's own array: on a VM, a
freshly allocated array of the same size was up to 1.8x slower than one reused call after call
(benchmarks/RESULTS.md), and a trainer's gradient is reused. The array is zeroed for the trial, so
that sums of sums neither overflow nor meet subnormal numbers, and restored afterwards. Each size
is tried once (:class:`PerSize`).
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np
from mpi4py import MPI

from mpigd.comm.timing import iterations_for, take_turns

# Each contender's time is the median of this many calls, taken in turn with the others: at 16 MiB
# on 2 ranks of a VM, single calls of one strategy varied by 20% within a launch.
TRIAL_ROUNDS = 5
# A trial keeps a copy of the message meanwhile; past this size there is none, rather than take that
# much memory again.
TRIAL_MAX_BYTES = 256 << 20


def fastest(comm: MPI.Comm, buffer: np.ndarray, runs: dict[str, Callable[[np.ndarray], None]]
            ) -> tuple[str, dict[str, float]]:
    """The name of the fastest of ``runs`` on ``buffer`` (ties: the first), and each one's seconds per call.

    Collective, and every run must be collective on ``comm``. Contenders take turns as in the
    benchmark (:func:`mpigd.comm.timing.take_turns`: an untimed call before each timed repeat);
    times are the slowest rank's, so every rank sees the same figures and makes the same choice.
    ``buffer`` holds its values again on return.
    """
    saved = buffer.copy()
    buffer.fill(0)
    calls = iterations_for(buffer.nbytes)
    try:
        samples = take_turns(comm, {name: (lambda run=run: run(buffer)) for name, run in runs.items()},
                             dict.fromkeys(runs, calls), TRIAL_ROUNDS)
    finally:
        np.copyto(buffer, saved)
    seconds = {name: statistics.median(times) for name, times in samples.items()}
    return min(runs, key=seconds.__getitem__), seconds


class PerSize:
    """Choices made by a trial, one per message size from ``min_bytes`` to :data:`TRIAL_MAX_BYTES`.

    The first time a size is met, :meth:`choose` runs :func:`fastest` on the contenders it is given
    and remembers the winner; :attr:`seconds` keeps the trial's times by size.
    """

    def __init__(self, comm: MPI.Comm, min_bytes: int) -> None:
        self.comm = comm
        self.min_bytes = min_bytes
        self.chosen: dict[int, str] = {}
        self.seconds: dict[int, dict[str, float]] = {}

    def choose(self, buffer: np.ndarray, contenders: Callable[[], dict[str, Callable[[np.ndarray], None]]]
               ) -> str | None:
        """The name chosen for ``buffer``'s size; ``None`` outside the sizes with a trial. Collective
        the first time a size is met. ``contenders()`` gives the runs, the default first; one alone
        is chosen without a trial."""
        nbytes = buffer.nbytes
        if not (self.min_bytes <= nbytes <= TRIAL_MAX_BYTES and buffer.flags.c_contiguous):
            return None
        if nbytes not in self.chosen:
            runs = contenders()
            if len(runs) == 1:
                self.chosen[nbytes] = next(iter(runs))
            else:
                self.chosen[nbytes], self.seconds[nbytes] = fastest(self.comm, buffer, runs)
        return self.chosen[nbytes]
