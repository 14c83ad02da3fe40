"""``mpigd tune``: calibrate the cost model, the ring's segment and the crossover of ``auto`` on this communicator.

Three kinds of measurement, all short:

* the alpha-beta-gamma parameters of :class:`~mpigd.comm.costmodel.CostModel`, from a ring of
  ``Sendrecv`` exchanges at a few sizes (alpha, beta) and the local add kernel (gamma); kept
  for projections to other rank counts and machines;
* the ring's segment size, from timing the ring with each of
  :data:`~mpigd.comm.strategies.ring.SEGMENT_CANDIDATES` at the sweep's sizes of 16 MiB and more
  (none below: the ring keeps its default), keeping the smallest whose time relative to the
  best at each size is within 3% of the least;
* the crossover table of ``auto``, from timing its candidates (native, ring with that segment,
  direct, tree) at every size of a sweep and keeping the fastest (above :data:`LARGE_BYTES`,
  not tree, and native only by a clear margin): measured, not modelled, so ``auto`` follows what
  this machine does.

The result is a JSON file (:func:`default_path` unless told otherwise) that ``auto`` and ``ring``
read; its format and reading live in :mod:`mpigd.comm.tunefile`, which has no MPI.
"""

from __future__ import annotations

import math
import platform
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from mpi4py import MPI

from mpigd.checks import check_choice, check_message_sizes, whole_element_sizes
from mpigd.comm.costmodel import CostModel, Crossover, fit_alpha_beta
from mpigd.comm.strategies.auto import CANDIDATES as MEASURED
from mpigd.comm.strategies.auto import candidates
from mpigd.comm.strategies.ring import SEGMENT_CANDIDATES, RingAllreduce
from mpigd.comm.timing import iterations_for, median, time_calls, time_interleaved
# The file format lives in a module without MPI; re-exported here, where callers have found it.
from mpigd.comm.tunefile import FORMAT, Tuning, default_path, find_tune_file, load, save
from mpigd.config import DTYPES
from mpigd.errors import UsageError
from mpigd.kernels import add_into

if TYPE_CHECKING:
    from mpigd.comm.communicator import Communicator

__all__ = ["FORMAT", "Tuning", "calibrate", "default_path", "find_tune_file", "load", "save"]

_FIT_SIZES = (8, 1 << 10, 1 << 16, 1 << 20, 1 << 23)
# The ring's segment is chosen on messages of at least four of the largest candidate segments.
_SEGMENT_PROBE_MIN_BYTES = 4 * max(SEGMENT_CANDIDATES)
_SEGMENT_TIE = 1.03
# Above LARGE_BYTES auto's table is built from less than the fastest repeat alone, because on 2 ranks
# which of two close contenders wins there changed from launch to launch by more than auto's 10%
# target (benchmarks/RESULTS.md, "The slow regime is a property of a launch"):
# - recursive doubling, which sends the whole buffer log2(p) times and is meant for small messages,
#   is left out: tunes found it fastest at 1-2 MiB and even 16 MiB, the launches after them had it
#   13-30% behind the best at 2 MiB and 1.3-1.6x at 16 MiB;
# - native is kept only where it beats both ring and direct by more than NATIVE_MARGIN: a tune in a
#   slow launch had it 1-8% ahead at 8-16 MiB, where the ring was 1.2-1.5x faster in normal
#   launches, and native's large messages hang on the allocator (a temporary buffer per call).
#   Within 10% of the fastest, the choice still meets auto's target in the launch measured.
LARGE_BYTES = 1 << 20
NATIVE_MARGIN = 1.10
# mpigd tune's sweep without --min-bytes/--max-bytes: powers of two from 8 B to 64 MiB.
DEFAULT_SIZES = tuple(8 << k for k in range(24))


def calibrate(comm: MPI.Comm | Communicator | None = None, sizes: Sequence[int] | None = None,
              dtype: str = "float64", repeats: int = 7) -> Tuning:
    """Measure this communicator: the cost model and the fastest strategy at each size (``mpigd tune``).

    Collective: call it on every rank of ``comm`` (an ``mpi4py`` communicator, a
    :class:`~mpigd.comm.Communicator`, or ``None`` for every rank of the job). Every rank returns the
    same :class:`Tuning` (the timings are maxima over ranks); write it from one rank with
    :func:`save` (to :func:`default_path` ``(tuning.ranks)`` where ``auto`` and ``ring`` look by
    default). ``sizes`` are message sizes in bytes (default: ``mpigd tune``'s, 8 B to 64 MiB by 2;
    :func:`mpigd.bench.allreduce.message_sizes` makes others). Arguments the command refuses raise
    :class:`~mpigd.errors.UsageError` on every rank alike, before any message.
    """
    check_choice("--dtype", dtype, DTYPES)
    if repeats < 1:
        raise UsageError(f"tune needs --repeats >= 1; got {repeats}")
    sizes = list(DEFAULT_SIZES if sizes is None else sizes)
    check_message_sizes(sizes)
    from mpigd.comm import mpi_comm_of

    comm = mpi_comm_of(comm)
    p = comm.Get_size()
    kind = np.dtype(dtype)
    sizes = whole_element_sizes(sizes, kind.itemsize)
    alpha, beta = _fit_exchange(comm, kind, repeats) if p > 1 else (0.0, 0.0)
    gamma = _measure_add(comm, kind, repeats)
    measurements: dict[str, Any] = {"sizes_bytes": list(sizes)}
    crossover = segment = None
    if p > 1 and sizes:
        segment = _best_ring_segment(comm, [s for s in sizes if s >= _SEGMENT_PROBE_MIN_BYTES], kind, repeats,
                                     measurements)
        # Built without a tune file: the one being made replaces whatever the old one says.
        strategies = dict(zip(MEASURED, candidates(comm, segment)))
        seconds: dict[str, list[float]] = {name: [] for name in MEASURED}
        fastest: dict[str, list[float]] = {name: [] for name in MEASURED}
        for nbytes in sizes:
            buffer = np.zeros(nbytes // kind.itemsize, dtype=kind)
            runs = {name: (lambda s=s: s.allreduce(buffer)) for name, s in strategies.items()}
            samples, _ = time_interleaved(comm, runs, iterations_for(nbytes), repeats)
            for name in MEASURED:
                seconds[name].append(median(samples[name]))
                fastest[name].append(min(samples[name]))
        measurements["median_seconds"] = seconds
        measurements["min_seconds"] = fastest
        # Other processes only ever add time: the fastest repeat is the least disturbed
        # estimate of what each strategy can do, so it decides the crossover.
        crossover = Crossover.from_measurements(sizes, _eligible(sizes, fastest))
    library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
    return Tuning(p, CostModel(alpha, beta, gamma), crossover, library, platform.node(), dtype, measurements,
                  segment)


def _eligible(sizes: list[int], seconds: dict[str, list[float]]) -> dict[str, list[float]]:
    """``seconds`` with the contenders auto should not choose at a size set to infinity (see LARGE_BYTES)."""
    out = {name: list(times) for name, times in seconds.items()}
    for i, nbytes in enumerate(sizes):
        if nbytes > LARGE_BYTES:
            out["tree"][i] = math.inf
            if min(seconds["ring"][i], seconds["direct"][i]) <= NATIVE_MARGIN * seconds["native"][i]:
                out["native"][i] = math.inf
    return out


def _best_ring_segment(comm: MPI.Comm, sizes: list[int], kind: np.dtype, repeats: int,
                       measurements: dict[str, Any]) -> int | None:
    """The ring's segment for this machine, measured over ``sizes``. Collective.

    Each candidate's fastest repeat at each size (the least disturbed estimate, as for the
    crossover) is taken relative to the best candidate's there, and averaged over the sizes. The
    smallest candidate within :data:`_SEGMENT_TIE` of the best average wins: differences that small
    are within what one run can tell apart, and on the AMD guest of benchmarks/RESULTS.md the
    largest segments, best in some launches, lost most in others.

    ``None`` when there is nothing to choose: no size large enough, or ranks sharing cores (the
    ring then takes whole chunks whatever the segment).
    """
    rings = {s: RingAllreduce(comm, segment_bytes=s, block_bytes=0) for s in SEGMENT_CANDIDATES}
    if not sizes or not rings[SEGMENT_CANDIDATES[0]].segment_bytes:
        return None
    fastest: dict[int, list[float]] = {s: [] for s in SEGMENT_CANDIDATES}
    for nbytes in sizes:
        buffer = np.zeros(nbytes // kind.itemsize, dtype=kind)
        runs = {s: (lambda r=r: r.allreduce(buffer)) for s, r in rings.items()}
        samples, _ = time_interleaved(comm, runs, 1, repeats)
        for s in SEGMENT_CANDIDATES:
            fastest[s].append(min(samples[s]))
    best_at = [min(fastest[s][i] for s in SEGMENT_CANDIDATES) for i in range(len(sizes))]
    relative = {s: sum(t / b for t, b in zip(fastest[s], best_at)) / len(sizes) for s in SEGMENT_CANDIDATES}
    measurements["ring_segments"] = {"sizes_bytes": list(sizes),
                                     "min_seconds": {str(s): fastest[s] for s in SEGMENT_CANDIDATES}}
    least = min(relative.values())
    return min(s for s in SEGMENT_CANDIDATES if relative[s] <= least * _SEGMENT_TIE)


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
