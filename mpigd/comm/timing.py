"""Timing collectives the OSU way: warm-up, Barrier, ``MPI.Wtime``, the slowest rank's time.

Shared by ``mpigd tune`` (which picks the crossover of ``auto`` from such timings) and
``mpigd bench allreduce`` (which reports them).
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np
from mpi4py import MPI

# Small messages are timed over many calls per repeat, so that one repeat lasts well above the
# clock's resolution; large ones over a single call. An upper bound: see time_interleaved.
_BYTES_PER_REPEAT = 1 << 18
_MAX_ITERATIONS = 200


def iterations_for(nbytes: int) -> int:
    """Calls per timed repeat for a message of ``nbytes``: 200 for tiny ones down to 1."""
    return max(1, min(_MAX_ITERATIONS, _BYTES_PER_REPEAT // max(nbytes, 1)))


def time_calls(comm: MPI.Comm, run: Callable[[], object], iterations: int, repeats: int,
               warmup: int = 1) -> list[float]:
    """Seconds per call of ``run()``, one figure per repeat, each the maximum over ranks.

    ``warmup`` untimed calls come first (compilation, first touch, caches).

    Collective: every rank of ``comm`` calls it with the same ``iterations``, ``repeats`` and
    ``warmup``, and ``run`` must itself be collective on ``comm`` (or local).
    """
    for _ in range(warmup):
        run()
    seconds = np.empty(1)
    samples = []
    for _ in range(repeats):
        comm.Barrier()
        start = MPI.Wtime()
        for _ in range(iterations):
            run()
        seconds[0] = (MPI.Wtime() - start) / iterations
        comm.Allreduce(MPI.IN_PLACE, seconds, op=MPI.MAX)
        samples.append(float(seconds[0]))
    return samples


def time_interleaved(comm: MPI.Comm, runs: dict[str, Callable[[], object]], max_iterations: int,
                     repeats: int, target_seconds: float = 5e-4) -> tuple[dict[str, list[float]], dict[str, int]]:
    """As :func:`time_calls` for several contenders, taking turns within each repeat. Collective.

    On a shared, noisy machine the load changes from one second to the next; timing every
    contender once per round puts them under the same conditions, so their ratio means more
    than the ratio of two runs made one after the other. Each contender gets as many calls per
    repeat (up to ``max_iterations``) as fill about ``target_seconds``, judged from a few
    warm-up calls, so that slow set-ups (oversubscribed ranks) do not take minutes; short
    repeats are also less often hit by the scheduler handing the core to another process.

    Returns the per-call seconds of each repeat and the calls per repeat, by contender.
    """
    iterations = {}
    for name, run in runs.items():
        one = min(time_calls(comm, run, 1, 3, warmup=1))  # the slowest rank's: same on every rank
        iterations[name] = max(1, min(max_iterations, int(target_seconds / max(one, 1e-9))))
    return take_turns(comm, runs, iterations, repeats), iterations


def take_turns(comm: MPI.Comm, runs: dict[str, Callable[[], object]], iterations: dict[str, int],
               repeats: int) -> dict[str, list[float]]:
    """``repeats`` rounds in which every contender has one timed repeat of ``iterations[name]`` calls
    (:func:`time_calls`), in turn; the per-call seconds of each repeat, by contender. Collective.

    Round ``r`` starts at the ``r``-th contender (modulo their number) and goes on in the given order:
    in a fixed order one contender would always follow the same other one, and on a 2-rank VM the
    ring timed right after native's 16 MiB allreduce was slower than the same ring timed after
    itself in 15 of 20 launches (benchmarks/RESULTS.md)."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_number in range(repeats):
        first = round_number % len(names) if names else 0
        for name in names[first:] + names[:first]:
            run = runs[name]
            # One untimed call first: the contender before may have filled the caches with its
            # own scratch, which would otherwise be charged to this one.
            samples[name] += time_calls(comm, run, iterations[name], 1, 1)
    return samples


def median(samples: list[float]) -> float:
    """The median of the repeats: what the tables report."""
    return statistics.median(samples)
