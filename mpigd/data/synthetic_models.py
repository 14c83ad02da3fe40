"""Synthetic data for the newer models: multi-class labels, and sparse (CSR) rows.

As in :mod:`mpigd.data.synthetic`, rows come in fixed blocks of ``BLOCK_ROWS``, each drawn from
its own seed sequence, so a row depends only on the seed and its global index: any rank count
gives the same data set, and a rank generates only the blocks that hold its rows.

Sparse rows: each row draws its number of non-zeros from Binomial(features, density), the
columns uniformly (duplicates merged) and the values standard normal, so generation costs
``O(nnz)``, not ``O(rows * features)``. Labels follow the true model as for dense data.
"""

from __future__ import annotations

import numpy as np

from mpigd.data.csr import CSRMatrix
from mpigd.data.synthetic import BLOCK_ROWS, MARGIN_SCALE, NOISE, _rng


def true_weights(task: str, n_features: int, classes: int, seed: int, scale: float) -> np.ndarray:
    """The ``features x outputs`` weights labels are drawn from (one output unless multi-class)."""
    outputs = classes if task == "classification" and classes > 2 else 1
    coef = _rng(seed, 5).standard_normal((n_features, outputs))
    return coef * (MARGIN_SCALE * scale if task == "classification" else 1.0)


def _labels(task: str, classes: int, margin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    draw = rng.random(margin.shape[0]) if task == "classification" else rng.standard_normal(margin.shape[0])
    if task == "regression":
        return margin[:, 0] + 0.5 + NOISE * draw
    if classes <= 2:
        return (draw < 1.0 / (1.0 + np.exp(-margin[:, 0] - 0.5))).astype(np.float64)
    z = margin - margin.max(axis=1, keepdims=True)
    cumulative = np.cumsum(np.exp(z), axis=1)
    # Inverse-CDF sampling of each row's class from its softmax probabilities.
    return (cumulative < draw[:, None] * cumulative[:, -1:]).sum(axis=1).astype(np.float64)


def generate_dense(task: str, n_features: int, classes: int, seed: int, start: int, stop: int,
                   dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[start, stop)``: standard normal features, labels from the true (multi-class) model."""
    coef = true_weights(task, n_features, classes, seed, 1.0 / np.sqrt(n_features))
    X = np.empty((stop - start, n_features), dtype=dtype)
    y = np.empty(stop - start, dtype=dtype)
    for block, lo, hi in _blocks(start, stop):
        rng = _rng(seed, 6, block)
        block_X = rng.standard_normal((BLOCK_ROWS, n_features))
        block_y = _labels(task, classes, block_X @ coef, rng)
        X[lo - start : hi - start] = block_X[lo - block * BLOCK_ROWS : hi - block * BLOCK_ROWS]
        y[lo - start : hi - start] = block_y[lo - block * BLOCK_ROWS : hi - block * BLOCK_ROWS]
    return X, y


def generate_sparse(task: str, n_features: int, classes: int, density: float, seed: int, start: int, stop: int,
                    dtype: str) -> tuple[CSRMatrix, np.ndarray]:
    """Rows ``[start, stop)`` as CSR with about ``density * n_features`` non-zeros a row."""
    coef = true_weights(task, n_features, classes, seed, 1.0 / np.sqrt(max(1.0, density * n_features)))
    pieces, labels = [], []
    for block, lo, hi in _blocks(start, stop):
        rng = _rng(seed, 7, block)
        counts = rng.binomial(n_features, density, BLOCK_ROWS)
        row_of = np.repeat(np.arange(BLOCK_ROWS, dtype=np.int64), counts)
        keys = np.unique(row_of * n_features + rng.integers(0, n_features, row_of.size))  # sorted, merged
        rows, cols = np.divmod(keys, n_features)
        values = rng.standard_normal(keys.size)
        margin = np.stack([np.bincount(rows, weights=values * coef[cols, c], minlength=BLOCK_ROWS)
                           for c in range(coef.shape[1])], axis=1)
        block_y = _labels(task, classes, margin, rng)
        indptr = np.zeros(BLOCK_ROWS + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=BLOCK_ROWS), out=indptr[1:])
        whole = CSRMatrix(indptr, cols, values.astype(dtype), (BLOCK_ROWS, n_features))
        pieces.append(whole.rows(lo - block * BLOCK_ROWS, hi - block * BLOCK_ROWS))
        labels.append(block_y[lo - block * BLOCK_ROWS : hi - block * BLOCK_ROWS])
    return concatenate(pieces, n_features, dtype), np.concatenate(labels or [np.empty(0)]).astype(dtype)


def concatenate(pieces: list[CSRMatrix], n_features: int, dtype: str) -> CSRMatrix:
    """The CSR blocks stacked one below the other."""
    if not pieces:
        return CSRMatrix(np.zeros(1, dtype=np.int64), np.empty(0, np.int64), np.empty(0, dtype), (0, n_features))
    offsets = np.cumsum([0] + [p.nnz for p in pieces[:-1]])
    indptr = np.concatenate([pieces[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(pieces, offsets)])
    return CSRMatrix(indptr, np.concatenate([p.indices for p in pieces]),
                     np.concatenate([p.data for p in pieces]).astype(dtype),
                     (sum(p.shape[0] for p in pieces), n_features))


def _blocks(start: int, stop: int):
    """``(block, lo, hi)`` for every block that holds rows of ``[start, stop)``."""
    if stop <= start:
        return
    for block in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1):
        yield block, max(start, block * BLOCK_ROWS), min(stop, (block + 1) * BLOCK_ROWS)
