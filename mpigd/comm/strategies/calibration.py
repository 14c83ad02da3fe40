"""What the strategies take from a tune file, read once by rank 0 and broadcast to every rank.

``auto`` takes its crossover table, ``ring`` its segment size. Every rank must hold the same
values (two ranks that pick different strategies, or cut a chunk differently, deadlock), and
other nodes may see another file or none, so only rank 0 reads; the values travel as integer
arrays, never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpigd.comm.costmodel import CostModel, Crossover
from mpigd.errors import UsageError

# The strategies auto may choose; the table travels as indices into this tuple.
CANDIDATES = ("native", "ring", "direct", "tree")


@dataclass(frozen=True)
class Calibration:
    """The crossover table of ``auto`` and the ring's segment size (``None``: no measured one)."""

    crossover: Crossover
    ring_segment_bytes: int | None


def agreed_calibration(comm: MPI.Comm, tune_file: str | None, strategy: str) -> Calibration:
    """The calibration for ``comm``'s rank count, the same on every rank. Collective.

    The file is ``tune_file``, else ``$MPIGD_TUNE_FILE``, else the default path of ``mpigd tune``
    when it exists; without one, the cost model's table with built-in parameters and no measured
    segment. A file made on another rank count gives the model's table (with its parameters) and
    no segment. A file the user named that cannot be read is a :class:`UsageError` on every rank,
    naming ``strategy``.
    """
    size = comm.Get_size()
    header = np.zeros(3, dtype=np.int64)  # [status, number of bounds, ring segment bytes or -1]
    problem = ""
    if comm.Get_rank() == 0:
        try:
            # The arrays are made here too: a value beyond int64 (a bound or segment of 1e30 in the
            # file) raised after this block used to stop rank 0 alone, the others waiting in Bcast.
            header[1:], bounds, choices = _as_arrays(_read(tune_file, size))
        except Exception as error:  # noqa: BLE001 - whatever stops rank 0 here, the others wait in Bcast for it
            problem = str(error) or type(error).__name__
            header[0] = 1
    comm.Bcast(header, root=0)
    if header[0]:
        raise UsageError(f"cannot use the tune file for the {strategy} strategy: {problem or 'see rank 0'}")
    if comm.Get_rank() != 0:
        bounds, choices = np.empty(header[1], np.int64), np.empty(header[1] + 1, np.int64)
    if bounds.size:
        comm.Bcast(bounds, root=0)
    comm.Bcast(choices, root=0)
    crossover = Crossover(tuple(int(b) for b in bounds), tuple(CANDIDATES[int(c)] for c in choices))
    return Calibration(crossover, None if header[2] < 0 else int(header[2]))


def _as_arrays(calibration: Calibration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What rank 0 broadcasts: [number of bounds, segment or -1], the bounds, the choices' indices.
    ``ValueError`` for a bound or segment beyond int64."""
    table, segment = calibration.crossover, calibration.ring_segment_bytes
    try:
        counts = np.array([len(table.bounds), -1 if segment is None else segment], dtype=np.int64)
        bounds = np.array(table.bounds, dtype=np.int64)
    except OverflowError:
        raise ValueError(f"a crossover bound or ring_segment_bytes above {np.iinfo(np.int64).max} bytes") from None
    choices = np.array([CANDIDATES.index(c) for c in table.choices], dtype=np.int64)
    return counts, bounds, choices


def _read(tune_file: str | None, size: int) -> Calibration:
    from mpigd.comm import tunefile

    path, required = tunefile.find_tune_file(tune_file, size)
    if path is None:
        return Calibration(Crossover.from_model(CostModel(), size), None)
    if required and not path.is_file():
        raise ValueError(f"{'not a file' if path.exists() else 'no such file'}: {path}")
    tuning = tunefile.load(path)
    if tuning.ranks < 2 <= size:  # auto's table came from alpha = beta = 0: every message free (plan refuses it too)
        raise ValueError(f"{path} was made by 'mpigd tune' on 1 rank, which sends no message: alpha and beta are "
                         f"not measured; run it on {size} ranks")
    table = tuning.crossover_for(size)
    unknown = set(table.choices) - set(CANDIDATES)
    if unknown:
        raise ValueError(f"{path}: unknown strategies {sorted(unknown)}")
    return Calibration(table, tuning.ring_segment_for(size))
