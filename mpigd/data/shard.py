"""What a reader hands the trainer: this rank's rows and the size of the whole data set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpigd.data.csr import CSRMatrix


@dataclass(frozen=True)
class Shard:
    """This rank's block of a data set that is partitioned by rows.

    ``X`` is a C-contiguous ``(n_local, n_features)`` array or a :class:`CSRMatrix` block of the
    same shape, ``y`` its labels (same dtype);
    ``row_start`` is the global index of the first local row and ``n_global`` the row count of
    the whole data set, so that sums over ranks can be turned into means.
    """

    X: np.ndarray | CSRMatrix
    y: np.ndarray
    n_global: int
    row_start: int
    source: str

    @property
    def n_local(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def sparse(self) -> bool:
        return isinstance(self.X, CSRMatrix)

    @property
    def nbytes(self) -> int:
        return self.X.nbytes + self.y.nbytes
