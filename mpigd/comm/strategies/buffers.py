"""Reusable memory for the strategies: scratch buffers and chunk layouts, made once and kept.

A strategy is called with the same buffer length step after step, so whatever it needs besides
the buffer (a receive area, the chunk offsets of a ring) is built on the first call and reused;
the hot path allocates no array.
"""

from __future__ import annotations

import numpy as np

from mpigd.partition import block_offsets

# A trainer reduces two or three buffer lengths (gradient, evaluation sums, a flag); keep a few
# more than that, so a benchmark sweeping sizes does not grow the cache without bound.
_LAYOUTS_KEPT = 8


def flat(buffer: np.ndarray) -> np.ndarray:
    """``buffer`` as a 1-D view of its items: the strategies cut chunks by item, and a slice of a
    2-D array would cut rows (the normal solver sums its Gram matrix). Nothing is copied."""
    if not buffer.flags.c_contiguous:
        raise TypeError("allreduce needs a C-contiguous numpy array")
    return buffer.reshape(-1)


class Scratch:
    """One growable receive buffer per dtype; :meth:`get` returns a view of exactly ``n`` items."""

    def __init__(self) -> None:
        self._store: dict[np.dtype, np.ndarray] = {}
        self._last: tuple[np.dtype, int, np.ndarray] | None = None

    def get(self, dtype: np.dtype, n: int) -> np.ndarray:
        """A contiguous array of ``n`` items of ``dtype``; its contents are undefined."""
        last = self._last
        if last is not None and last[0] == dtype and last[1] == n:
            return last[2]
        store = self._store.get(dtype)
        if store is None or store.size < n:
            # Grow geometrically so that a sweep of rising sizes reallocates only a few times.
            size = max(n, 0 if store is None else 2 * store.size)
            store = self._store[dtype] = np.empty(size, dtype=dtype)
        view = store[:n]
        self._last = (dtype, n, view)
        return view


class ChunkLayouts:
    """The ring's chunk offsets for each buffer length seen, from :func:`mpigd.partition.block_offsets`.

    Offsets are kept as Python ints: slicing a NumPy array with them is cheaper than with NumPy
    integers, and they are read on every step of every call.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._offsets: dict[int, list[int]] = {}

    def offsets(self, n: int) -> list[int]:
        """``size + 1`` offsets splitting ``n`` items into ``size`` chunks differing by at most one."""
        found = self._offsets.get(n)
        if found is None:
            if len(self._offsets) >= _LAYOUTS_KEPT:
                self._offsets.pop(next(iter(self._offsets)))
            found = self._offsets[n] = [int(x) for x in block_offsets(n, self.size)]
        return found
