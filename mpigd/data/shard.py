"""What a reader hands the trainer: this rank's rows and the size of the whole data set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpigd.data.csr import CSRMatrix


@dataclass(frozen=True)
class Shard:
    """This rank's block of a data set that is partitioned by rows.

    ``X`` is a C-contiguous ``(n_local, n_features)`` array or a :class:`CSRMatrix` block of the
    same shape, ``y`` its labels (same dtype; zeros, with ``meta["labelled"]`` false, for a data set
    read without labels by ``mpigd predict``);
    ``row_start`` is the global index of the first local row and ``n_global`` the row count of
    the whole data set, so that sums over ranks can be turned into means. The global rows are
    the ranks' rows concatenated in rank order, which is the file's order.

    ``counts`` holds every rank's ``n_local`` (text readers split a file by bytes, so these
    are not the arithmetic :func:`~mpigd.partition.block_counts`). ``meta`` holds what the reader knows about the input: the
    format, and for text formats the byte span this rank read (``read_span``, see
    :mod:`mpigd.data.textio`) and the file line of its first row (``first_line``).
    """

    X: np.ndarray | CSRMatrix
    y: np.ndarray
    n_global: int
    row_start: int
    source: str
    counts: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_local(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def sparse(self) -> bool:
        return isinstance(self.X, CSRMatrix)

    @property
    def nbytes(self) -> int:
        return self.X.nbytes + self.y.nbytes
