"""``auto``: per message size, the strategy the calibration found fastest on this communicator.

The crossover table comes from the tune file (``mpigd tune``) when there is one, else from the
cost model with built-in parameters (ring against recursive doubling). It is read once, by rank
0, and broadcast (:mod:`.calibration`), so every rank holds the same table and always picks the
same strategy: a different choice on two ranks would deadlock. The per-call choice is a binary
search in it.

From 256 KiB the table's choice is checked in the launch itself, once per message size: the
strategies that give the same bits as the table's choice on this rank count (see
:func:`same_bits`) are timed on the caller's array (zeroed, then restored), a few rounds in turn, and the
fastest runs from then on. A table is made in one launch and used in others, and which of two
close contenders wins can change between launches by more than auto's 10% target (on one VM the
library's own allreduce was 20% ahead of the ring at 8 MiB in some launches and 20-50% behind in
others: benchmarks/RESULTS.md). The trial costs a few dozen calls of that size, once; since it only
ever swaps strategies with the same bits, results stay the same, run after run.
"""

from __future__ import annotations

import bisect
import weakref
from typing import Callable

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import make_strategy, register, trial
from mpigd.comm.strategies.calibration import CANDIDATES, agreed_calibration
from mpigd.comm.strategies.ring import SEGMENT_BYTES, RingAllreduce

# Below this size a call takes under ~30 us, and the table met auto's target there in 26 of 27 2-rank
# runs on the VM of benchmarks/RESULTS.md (one miss, at 32 B); above TRIAL_MAX_BYTES the table stands
# (bandwidth-bound sizes, where ring and direct are the choice).
TRIAL_MIN_BYTES = 256 << 10


@register("auto")
class AutoAllreduce:
    """Dispatch each call to native, ring, direct or tree by its size in bytes, from a crossover table.

    Built collectively (rank 0 reads the tune file and broadcasts the table). Deterministic: the
    choice depends on the size alone, and where a trial in the launch overrules the table (sizes
    from 256 KiB) it picks among strategies with the same bits. The trial's times (:mod:`.trial`)
    are kept in :attr:`trials` by size.

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
        self._tried = trial.PerSize(comm, TRIAL_MIN_BYTES)
        self._largest = [0] * len(CANDIDATES)  # the largest message each has run, 0: none
        self._last_buffer: Callable[[], np.ndarray | None] = lambda: None
        self._last_run = self._candidates[0].allreduce

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place with the strategy chosen for its size. Collective."""
        # A trainer reduces the same arrays step after step: for the array of the last call the
        # choice stands (an array's size cannot change while it lives), and the whole cost of
        # auto is a weak reference's look-up and an identity test, ~30 ns on a 1.5 us
        # small-message allreduce. Weak: holding the caller's array would keep it alive, however
        # large, after the caller let it go.
        if self._last_buffer() is not buffer:
            self._select(buffer)
        self._last_run(buffer)

    def _select(self, buffer: np.ndarray) -> None:
        nbytes = buffer.nbytes
        which = self._index[bisect.bisect_left(self._bounds, nbytes)]
        tried = self._tried.choose(buffer, lambda: self._interchangeable(CANDIDATES[which]))
        if tried is not None:
            which = CANDIDATES.index(tried)
        self._largest[which] = max(self._largest[which], nbytes or 1)
        self._last_buffer = weakref.ref(buffer)
        self._last_run = self._candidates[which].allreduce

    def _interchangeable(self, table_choice: str) -> dict[str, object]:
        """The table's choice and the strategies with its bits on this communicator (one rank: nothing to try)."""
        ranks = self.comm.Get_size()
        names = same_bits(table_choice, ranks) if ranks > 1 else (table_choice,)
        return {name: self._candidates[CANDIDATES.index(name)].allreduce for name in names}

    @property
    def trials(self) -> dict[int, dict[str, float]]:
        """The trials' seconds per call, by strategy, per message size in bytes."""
        return self._tried.seconds

    def describe(self) -> str:
        """What ran, e.g. ``auto->ring``, or ``auto->ring+tree`` (the one for the largest message first)."""
        ran = sorted((n for n in range(len(CANDIDATES)) if self._largest[n]), key=lambda n: -self._largest[n])
        return self.name + ("->" + "+".join(CANDIDATES[n] for n in ran) if ran else "")

    def choose(self, nbytes: int) -> str:
        """The strategy a message of ``nbytes`` would run, without running it (nor a trial)."""
        return self._tried.chosen.get(nbytes) or CANDIDATES[self._index[bisect.bisect_left(self._bounds, nbytes)]]


def same_bits(name: str, ranks: int) -> tuple[str, ...]:
    """The candidates whose sums have the same bits as ``name``'s on ``ranks`` ranks, ``name`` first.

    On one or two ranks every element of the sum is one addition at most, and ``a + b`` and
    ``b + a`` are the same number in IEEE arithmetic, whichever rank adds: all of them. On more,
    each strategy adds in its own order (addition is not associative), except ring and direct,
    which add in the same order by construction (:mod:`.direct`).
    """
    if ranks <= 2:
        return (name,) + tuple(c for c in CANDIDATES if c != name)
    if name in ("ring", "direct"):
        return (name, "direct" if name == "ring" else "ring")
    return (name,)


def candidates(comm: MPI.Comm, ring_segment_bytes: int | None) -> list:
    """The strategies of :data:`CANDIDATES`, in that order, the ring with ``ring_segment_bytes``
    (``None``: its default). Collective. No tune file is read: the caller has the calibration."""
    return [RingAllreduce(comm, segment_bytes=ring_segment_bytes or SEGMENT_BYTES) if name == "ring"
            else make_strategy(name, comm) for name in CANDIDATES]
