"""Timing interchangeable ways of summing one message, in the launch itself, to run the fastest.

``auto`` tries strategies that give the same bits, the ring tries cutting a large message into
cache-sized blocks (which gives the same bits too). Both time on the caller's own array: on a VM, a
freshly allocated array of the same size was up to 1.8x slower than one reused call after call
(benchmarks/RESULTS.md), and a trainer's gradient is reused. The array is zeroed for the trial, so
that sums of sums neither overflow nor meet subnormal numbers, and restored afterwards.
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np
from mpi4py import MPI

from mpigd.comm.timing import iterations_for, time_calls

# Each contender's time is the median of this many calls, taken in turn with the others: at 16 MiB
# on 2 ranks of a VM, single calls of one strategy varied by 20% within a launch.
TRIAL_ROUNDS = 5
# A trial keeps a copy of the message meanwhile; past this size there is none, rather than take that
# much memory again.
TRIAL_MAX_BYTES = 256 << 20


def fastest(comm: MPI.Comm, buffer: np.ndarray, runs: dict[str, Callable[[np.ndarray], None]]
            ) -> tuple[str, dict[str, float]]:
    """The name of the fastest of ``runs`` on ``buffer`` (ties: the first), and each one's seconds per call.

    Collective, and every run must be collective on ``comm``. Each timed call follows an untimed
    one, as in the benchmark (the contender before has just filled the caches with its own
    scratch); times are the slowest rank's, so every rank sees the same figures and makes the same
    choice. ``buffer`` holds its values again on return.
    """
    saved = buffer.copy()
    buffer.fill(0)
    calls = iterations_for(buffer.nbytes)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for _ in range(TRIAL_ROUNDS):
            for name, run in runs.items():
                samples[name] += time_calls(comm, lambda run=run: run(buffer), calls, 1, warmup=1)
    finally:
        np.copyto(buffer, saved)
    seconds = {name: statistics.median(times) for name, times in samples.items()}
    return min(runs, key=seconds.__getitem__), seconds
