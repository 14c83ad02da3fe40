"""``mpigd tune``: calibrate the cost model and the crossover of ``auto`` on this communicator.

Two kinds of measurement, both short:

* the alpha-beta-gamma parameters of :class:`~mpigd.comm.costmodel.CostModel`, from a ring of
  ``Sendrecv`` exchanges at a few sizes (alpha, beta) and the local add kernel (gamma); kept
  for projections to other rank counts and machines;
* the crossover table of ``auto``, from timing its candidates (native, ring, direct, tree) at
  every size of a sweep and keeping the fastest: measured, not modelled, so ``auto`` follows
  what this machine does.

The result is a JSON file (:func:`default_path` unless told otherwise) that ``auto`` reads; its
format and reading live in :mod:`mpigd.comm.tunefile`, which has no MPI.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
from mpi4py import MPI

from mpigd.comm.costmodel import CostModel, Crossover, fit_alpha_beta
from mpigd.comm.strategies import make_strategy
from mpigd.comm.strategies.auto import CANDIDATES as MEASURED
from mpigd.comm.timing import iterations_for, median, time_calls, time_interleaved
# The file format lives in a module without MPI; re-exported here, where callers have found it.
from mpigd.comm.tunefile import FORMAT, Tuning, default_path, find_tune_file, load, save
from mpigd.kernels import add_into

__all__ = ["FORMAT", "Tuning", "calibrate", "default_path", "find_tune_file", "load", "save"]

_FIT_SIZES = (8, 1 << 10, 1 << 16, 1 << 20, 1 << 23)


def calibrate(comm: MPI.Comm, sizes: list[int], dtype: str = "float64", repeats: int = 5) -> Tuning:
    """Measure this communicator: the cost model and the fastest strategy at each size. Collective.

    Every rank returns the same :class:`Tuning` (the timings are maxima over ranks).
    """
    p = comm.Get_size()
    kind = np.dtype(dtype)
    alpha, beta = _fit_exchange(comm, kind, repeats) if p > 1 else (0.0, 0.0)
    gamma = _measure_add(comm, kind, repeats)
    measurements: dict[str, Any] = {"sizes_bytes": list(sizes)}
    crossover = None
    if p > 1 and sizes:
        strategies = {name: make_strategy(name, comm) for name in MEASURED}
        seconds: dict[str, list[float]] = {name: [] for name in MEASURED}
        fastest: dict[str, list[float]] = {name: [] for name in MEASURED}
        for nbytes in sizes:
            buffer = np.zeros(max(1, nbytes // kind.itemsize), dtype=kind)
            runs = {name: (lambda s=s: s.allreduce(buffer)) for name, s in strategies.items()}
            samples, _ = time_interleaved(comm, runs, iterations_for(nbytes), repeats)
            for name in MEASURED:
                seconds[name].append(median(samples[name]))
                fastest[name].append(min(samples[name]))
        measurements["median_seconds"] = seconds
        measurements["min_seconds"] = fastest
        # Other processes only ever add time: the fastest repeat is the least disturbed
        # estimate of what each strategy can do, so it decides the crossover.
        crossover = Crossover.from_measurements(sizes, fastest)
    library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
    return Tuning(p, CostModel(alpha, beta, gamma), crossover, library, platform.node(), dtype, measurements)


def _fit_exchange(comm: MPI.Comm, kind: np.dtype, repeats: int) -> tuple[float, float]:
    # One step of a ring: every rank sends to the right and receives from the left at once,
    # which is what both ring and recursive doubling do at each step.
    p, r = comm.Get_size(), comm.Get_rank()
    right, left = (r + 1) % p, (r - 1) % p
    times = []
    for nbytes in _FIT_SIZES:
        out = np.zeros(max(1, nbytes // kind.itemsize), dtype=kind)
        into = np.empty_like(out)
        samples = time_calls(comm, lambda: comm.Sendrecv(out, right, 31, into, left, 31),
                             iterations_for(nbytes), repeats)
        times.append(median(samples))
    return fit_alpha_beta([float(s) for s in _FIT_SIZES], times)


def _measure_add(comm: MPI.Comm, kind: np.dtype, repeats: int) -> float:
    n = (4 << 20) // kind.itemsize  # past the caches, as the large messages are
    a, b = np.ones(n, dtype=kind), np.ones(n, dtype=kind)
    samples = time_calls(comm, lambda: add_into(a, b), 1, repeats)
    return median(samples) / (n * kind.itemsize)
