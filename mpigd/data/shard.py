"""What a reader hands the trainer: this rank's rows and the size of the whole data set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CSR:
    """This rank's rows in compressed sparse row form (what the LIBSVM reader parses).

    Row ``i`` holds the values ``data[indptr[i]:indptr[i+1]]`` at the 0-based columns
    ``indices[indptr[i]:indptr[i+1]]``, strictly increasing within a row. ``indptr`` and
    ``indices`` are int64, ``data`` has the run's dtype; ``n_features`` is the global column
    count agreed by every rank.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_features: int

    @property
    def n_rows(self) -> int:
        return self.indptr.shape[0] - 1

    def to_dense(self, dtype: np.dtype | str = np.float64) -> np.ndarray:
        """The same rows as a C-contiguous dense ``(n_rows, n_features)`` array."""
        dense = np.zeros((self.n_rows, self.n_features), dtype=dtype)
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        dense[rows, self.indices] = self.data
        return dense


@dataclass(frozen=True)
class Shard:
    """This rank's block of a data set that is partitioned by rows.

    ``X`` is a C-contiguous ``(n_local, n_features)`` array, ``y`` its labels (same dtype);
    ``row_start`` is the global index of the first local row and ``n_global`` the row count of
    the whole data set, so that sums over ranks can be turned into means. The global rows are
    the ranks' rows concatenated in rank order, which is the file's order.

    ``counts`` holds every rank's ``n_local`` (text readers split a file by bytes, so these
    are not the arithmetic :func:`~mpigd.partition.block_counts`). ``csr``, when set, is the
    same block in sparse form (LIBSVM input); ``X`` is then its densified copy, until the
    kernels read CSR directly. ``meta`` holds what the reader knows about the input: the
    format, and for text formats the byte span this rank read (``read_span``, see
    :mod:`mpigd.data.textio`) and the file line of its first row (``first_line``).
    """

    X: np.ndarray
    y: np.ndarray
    n_global: int
    row_start: int
    source: str
    counts: np.ndarray | None = None
    csr: CSR | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_local(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def nbytes(self) -> int:
        return self.X.nbytes + self.y.nbytes
