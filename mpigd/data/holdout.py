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


def _select(shard: Shard, mask: np.ndarray, comm, label: str) -> Shard:
    rows = np.flatnonzero(mask)
    X = shard.X.take(rows) if isinstance(shard.X, CSRMatrix) else np.ascontiguousarray(shard.X[rows])
    counts = comm.rank_values(rows.size)  # every rank's share: SGD sizes its global batches from them
    return Shard(X, np.ascontiguousarray(shard.y[rows]), int(counts.sum()), exclusive_prefix(counts, comm.rank),
                 f"{shard.source} [{label}]", counts, dict(shard.meta))


def split(shard: Shard, fraction: float, seed: int, comm) -> tuple[Shard, Shard]:
    """This rank's training rows and held-out rows, each with its global row count. Collective."""
    mask = held_out(seed, shard.row_start, shard.row_start + shard.n_local, fraction)
    return _select(shard, ~mask, comm, "training rows"), _select(shard, mask, comm, f"held-out {fraction:g}")
