"""Synthetic regression and classification data with known true weights.

Rows are generated in fixed blocks of :data:`BLOCK_ROWS`, each from its own seed sequence
``(seed, block)``, so any row's values depend only on the seed and the row's global index: a
rank generates just its own rows, and the data set is the same whatever the rank count.
"""

from __future__ import annotations

import numpy as np

BLOCK_ROWS = 4096
NOISE = 0.1  # standard deviation of the regression noise
MARGIN_SCALE = 3.0  # typical size of a classification margin: learnable, not separable


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def true_params(task: str, n_features: int, seed: int) -> tuple[np.ndarray, float]:
    """The weights and intercept the labels are drawn from."""
    rng = _rng(seed, 0)
    coef = rng.standard_normal(n_features)
    if task == "classification":
        coef *= MARGIN_SCALE / np.sqrt(n_features)
    return coef, 0.5


def generate(task: str, n_features: int, seed: int, start: int, stop: int, dtype: str,
             density: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[start, stop)`` of the data set: ``X`` standard normal, ``y`` from the true model.

    ``task`` is ``"regression"`` (y = x·w + b + noise) or ``"classification"`` (y is 1 with
    probability sigmoid(x·w + b), else 0). With ``density`` below 1 each entry of ``X`` is kept
    with that probability and set to 0 otherwise (the mask has its own random stream, so dense
    data is unchanged), and the labels come from the sparse ``X``.
    """
    coef, intercept = true_params(task, n_features, seed)
    X = np.empty((stop - start, n_features), dtype=dtype)
    y = np.empty(stop - start, dtype=dtype)
    first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
    for block in range(first, last + 1 if stop > start else first):
        rng = _rng(seed, 1, block)
        block_X = rng.standard_normal((BLOCK_ROWS, n_features))
        draw = rng.random(BLOCK_ROWS) if task == "classification" else rng.standard_normal(BLOCK_ROWS)
        if density < 1.0:
            block_X[_rng(seed, 3, block).random(block_X.shape) >= density] = 0.0
        margin = block_X @ coef + intercept
        if task == "classification":
            block_y = (draw < 1.0 / (1.0 + np.exp(-margin))).astype(np.float64)
        else:
            block_y = margin + NOISE * draw
        lo = max(start, block * BLOCK_ROWS)
        hi = min(stop, (block + 1) * BLOCK_ROWS)
        X[lo - start : hi - start] = block_X[lo - block * BLOCK_ROWS : hi - block * BLOCK_ROWS]
        y[lo - start : hi - start] = block_y[lo - block * BLOCK_ROWS : hi - block * BLOCK_ROWS]
    return X, y
