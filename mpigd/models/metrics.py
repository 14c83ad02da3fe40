"""Metrics from sums that add across ranks: regression sums and classification confusion matrices.

Every model turns its rows into outputs (margins, logits, or values) a chunk at a time and adds
per-chunk sums into a ``stats`` vector; the trainer allreduces the vector, and the metrics are
computed from the global sums, so they are exact whatever the rank count. ``stats[0]`` is always
the summed loss (without the penalty).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

CHUNK = 65536  # rows per chunk of outputs: bounds the scratch memory of an evaluation


def for_chunks(n_rows: int, take: Callable[[int, int], None]) -> None:
    """Call ``take(start, stop)`` over consecutive chunks of at most :data:`CHUNK` rows."""
    for start in range(0, n_rows, CHUNK):
        take(start, min(n_rows, start + CHUNK))


def regression_stats(predicted: np.ndarray, y: np.ndarray, stats: np.ndarray, shift: float = 0.0) -> None:
    """Add [½Σr², Σr², Σ(y − shift), Σ(y − shift)²] of the residuals ``r = predicted - y`` to ``stats``.

    ``shift``, the same on every rank and near the targets' mean, keeps the spread of
    :func:`regression_metrics` exact: about 0, Σy² − (Σy)²/n cancels to rounding noise when the
    mean is large next to the spread (targets of 1e8 ± 1 gave no r2 at all).
    """
    residual = predicted.astype(np.float64) - y
    squared = float(residual @ residual)
    y64 = y.astype(np.float64) - shift
    stats[:4] += (0.5 * squared, squared, y64.sum(), y64 @ y64)


def regression_metrics(stats: np.ndarray, n_rows: int) -> dict[str, float]:
    """r2 and RMSE from the global sums of :func:`regression_stats` (any shift: the spread does not depend on it)."""
    _, squared_error, total, total_squares = (float(s) for s in stats[:4])
    spread = total_squares - total * total / n_rows if n_rows else 0.0
    return {
        "r2": 1.0 - squared_error / spread if spread > 0 else float("nan"),
        "rmse": float(np.sqrt(squared_error / n_rows)) if n_rows else float("nan"),
    }


def softmax_log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Σ −log softmax(z)[label] over the rows, stable for any logits."""
    z = logits.astype(np.float64)
    top = z.max(axis=1)
    log_total = np.log(np.exp(z - top[:, None]).sum(axis=1)) + top
    return float(np.sum(log_total - z[np.arange(len(labels)), labels]))


def confusion_add(predicted: np.ndarray, labels: np.ndarray, k: int, confusion: np.ndarray) -> None:
    """Add the counts of (true label, predicted label) pairs to the flat ``k x k`` ``confusion``."""
    confusion += np.bincount(labels * k + predicted, minlength=k * k)


def classification_metrics(stats: np.ndarray, n_rows: int, k: int) -> dict[str, object]:
    """Accuracy, mean log-loss, and per-class precision and recall from ``[loss, confusion k x k]``.

    A class never predicted has precision 0 (scikit-learn's ``zero_division=0``); a class absent
    from the labels has recall 0.
    """
    confusion = stats[1 : 1 + k * k].reshape(k, k)  # rows: true class, columns: predicted class
    correct = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, correct / predicted, 0.0)
        recall = np.where(actual > 0, correct / actual, 0.0)
    return {
        "accuracy": float(correct.sum()) / n_rows if n_rows else float("nan"),
        "log_loss": float(stats[0]) / n_rows if n_rows else float("nan"),
        "precision": [float(p) for p in precision],
        "recall": [float(r) for r in recall],
    }
