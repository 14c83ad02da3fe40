"""Partition arithmetic, with no communication: which rows (or chunk) each rank owns."""

from __future__ import annotations

import numpy as np


def block_range(n: int, size: int, rank: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of ``rank`` when ``n`` rows are split over ``size`` ranks.

    Blocks are contiguous, in rank order, and differ in length by at most one; the first
    ``n % size`` ranks get the longer ones.
    """
    if size < 1 or not 0 <= rank < size or n < 0:
        raise ValueError(f"bad partition: n={n}, size={size}, rank={rank}")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def block_counts(n: int, size: int) -> np.ndarray:
    """The length of every rank's block, as an int64 array of ``size`` entries."""
    base, extra = divmod(n, size)
    counts = np.full(size, base, dtype=np.int64)
    counts[:extra] += 1
    return counts


def block_offsets(n: int, size: int) -> np.ndarray:
    """Where every rank's block starts: ``size + 1`` offsets, the last one being ``n``."""
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(block_counts(n, size), out=offsets[1:])
    return offsets


def exclusive_prefix(values: np.ndarray, rank: int) -> int:
    """The sum of the entries of ``values`` before ``rank``: where ``rank``'s part starts."""
    return int(values[:rank].sum())
