"""Standardization: every feature shifted to mean 0 and scaled to variance 1 over the *global* data.

The statistics are reduced across ranks in two passes, first the sums (for the means), then the
sums of squared deviations from those means. Two passes cost one more read of the local block
but avoid the cancellation of the one-pass ``E[x^2] - E[x]^2`` formula, which loses every digit
when a feature's mean is large next to its spread. Features with zero variance (to rounding) are
only centred (scale 1), as scikit-learn's ``StandardScaler`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpigd.data.shard import Shard

CHUNK_ROWS = 65536  # bounds the float64 temporary of the second pass


@dataclass(frozen=True)
class Scaler:
    """``x_standardized = (x - mean) / scale``, feature by feature (float64 arrays)."""

    mean: np.ndarray
    scale: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays saved beside the model parameters in ``params.npz``."""
        return {"scaler_mean": self.mean.copy(), "scaler_scale": self.scale.copy()}

    def apply(self, X: np.ndarray) -> None:
        """Standardize ``X`` in place (any dtype; the arithmetic is in float64)."""
        for lo in range(0, X.shape[0], CHUNK_ROWS):
            block = X[lo:lo + CHUNK_ROWS]
            block[...] = (block - self.mean) / self.scale


def fit(shard: Shard, comm) -> Scaler:
    """The global per-feature mean and standard deviation of ``shard.X`` over every rank.

    Collective: two allreduces of ``n_features`` float64 values. The variance is the
    population variance (divided by ``n_global``).
    """
    X = shard.X
    # Sums and squares are taken in units of a power of two at least each feature's largest
    # magnitude (scaling by a power of two is exact): no overflow for values up to float64's
    # largest, where squared deviations would reach Inf (a feature of 1e200 did).
    largest = np.zeros(X.shape[1], dtype=np.float64)
    for lo in range(0, X.shape[0], CHUNK_ROWS):  # in chunks: |X| whole would be a copy of the data
        np.maximum(largest, np.abs(X[lo:lo + CHUNK_ROWS]).max(axis=0), out=largest)
    comm.allreduce_max(largest)
    unit = np.where(largest > 0, np.ldexp(1.0, np.frexp(largest)[1]), 1.0)
    sums = np.zeros(X.shape[1], dtype=np.float64)
    for lo in range(0, X.shape[0], CHUNK_ROWS):
        sums += (X[lo:lo + CHUNK_ROWS] / unit).sum(axis=0)
    comm.allreduce(sums)
    mean = sums / shard.n_global
    squares = np.zeros(X.shape[1], dtype=np.float64)
    for lo in range(0, X.shape[0], CHUNK_ROWS):
        deviation = X[lo:lo + CHUNK_ROWS] / unit - mean
        squares += np.einsum("ij,ij->j", deviation, deviation)
    comm.allreduce(squares)
    variance = squares / shard.n_global
    scale = np.sqrt(variance) * unit
    # A constant feature whose mean is not exact (0.1 three times sums to 0.30000000000000004)
    # leaves a variance of rounding errors: scaling by it would blow the feature up. The bound
    # on those errors is scikit-learn's (StandardScaler, _is_constant_feature).
    eps, n = np.finfo(np.float64).eps, shard.n_global
    scale[variance <= n * eps * variance + (n * mean * eps) ** 2] = 1.0
    return Scaler(mean * unit, scale)
