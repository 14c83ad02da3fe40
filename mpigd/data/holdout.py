"""Held-out rows chosen by a hash of (seed, global row index): the same rows whatever the rank count."""

from __future__ import annotations

import numpy as np

from mpigd.data.csr import CSRMatrix
from mpigd.data.shard import Shard
from mpigd.partition import exclusive_prefix

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a fast, well-mixed 64-bit hash (wrapping arithmetic is intended)."""
    with np.errstate(over="ignore"):
        x = (x + _GOLDEN).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def held_out(seed: int, start: int, stop: int, fraction: float) -> np.ndarray:
    """Which of the global rows ``[start, stop)`` are held out: those whose hash, as a number in
    [0, 1), falls below ``fraction``."""
    with np.errstate(over="ignore"):
        keys = _splitmix64(np.arange(start, stop, dtype=np.uint64) ^ _splitmix64(np.array([seed], np.uint64)))
    return (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


# Rows moved per piece when the training rows are compacted in place: the only temporary.
COMPACT_PIECE_BYTES = 1 << 22


def _compacted(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` for increasing ``rows``, made in place in ``array``'s first rows, a piece at
    a time (a piece's sources are at or past its place, and later pieces' sources past it), and
    returned as a view of them."""
    step = max(1, COMPACT_PIECE_BYTES // max(1, array.strides[0]))
    for lo in range(0, rows.size, step):
        hi = min(lo + step, rows.size)
        array[lo:hi] = array[rows[lo:hi]]
    return array[:rows.size]


def _select(shard: Shard, mask: np.ndarray, comm, label: str, in_place: bool = False) -> Shard:
    rows = np.flatnonzero(mask)
    if isinstance(shard.X, CSRMatrix):
        X, y = shard.X.take(rows), np.ascontiguousarray(shard.y[rows])
    elif in_place and shard.X.flags.writeable and shard.y.flags.writeable:
        X, y = _compacted(shard.X, rows), _compacted(shard.y, rows)
    else:
        X, y = np.ascontiguousarray(shard.X[rows]), np.ascontiguousarray(shard.y[rows])
    counts = comm.rank_values(rows.size)  # every rank's share: SGD sizes its global batches from them
    return Shard(X, y, int(counts.sum()), exclusive_prefix(counts, comm.rank),
                 f"{shard.source} [{label}]", counts, dict(shard.meta))


def split(shard: Shard, fraction: float, seed: int, comm) -> tuple[Shard, Shard]:
    """This rank's training rows and held-out rows, each with its global row count. Collective.

    Takes ``shard`` over: a dense one's arrays become the training rows' (compacted in place, so
    that the split holds the shard once plus the held-out rows, not twice)."""
    mask = held_out(seed, shard.row_start, shard.row_start + shard.n_local, fraction)
    test = _select(shard, mask, comm, f"held-out {fraction:g}")  # copied out before the compaction
    return _select(shard, ~mask, comm, "training rows", in_place=True), test
