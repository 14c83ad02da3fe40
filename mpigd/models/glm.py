"""Linear and logistic regression: weights and an intercept, ``params = [w_1 .. w_d, b]``; dense or CSR rows."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mpigd import kernels
from mpigd.data.csr import CSRMatrix
from mpigd.models import metrics


def block_rows(X, start: int, stop: int):
    """Rows ``[start, stop)`` of a dense array or a CSR block."""
    return X.rows(start, stop) if isinstance(X, CSRMatrix) else X[start:stop]


class GeneralizedLinearModel:
    """Shared layout and plumbing; subclasses name their kernels and metrics."""

    name = ""
    task = ""
    n_eval_stats = 0
    n_outputs = 1

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.n_params = n_features + 1
        self.n_penalized = n_features

    def init_params(self, dtype: np.dtype, seed: int = 0) -> np.ndarray:
        """Zeros: the objective is convex, so any start leads to the same optimum."""
        return np.zeros(self.n_params, dtype=dtype)

    def loss_grad(self, X, y, params, grad, rows=None) -> float:
        if isinstance(X, CSRMatrix):
            return kernels.csr_glm_loss_grad(X.indptr, X.indices, X.data, y, rows, params, grad, self.loss)
        if rows is None:
            return kernels.glm_loss_grad(X, y, params, grad, self.loss)
        return kernels.glm_loss_grad_rows(X, y, rows, params, grad, self.loss)

    def local_round(self, X) -> tuple[Callable, tuple, tuple]:
        """The kernel that takes a local SGD round's later steps in one call on the rows ``X``, the
        arrays of ``X`` it takes, and the model's own arguments to it (mpigd/algorithms/local_sgd.py)."""
        if isinstance(X, CSRMatrix):
            return kernels.csr_glm_local_steps, (X.indptr, X.indices, X.data), (self.loss,)
        return kernels.glm_local_steps, (X,), (self.loss,)

    def sync_round(self, X) -> tuple[Callable, tuple, tuple]:
        """As :meth:`local_round`, for synchronous SGD's steps on one rank (kernels/sync_round.py)."""
        if isinstance(X, CSRMatrix):
            return kernels.csr_glm_sync_steps, (X.indptr, X.indices, X.data), (self.loss,)
        return kernels.glm_sync_steps, (X,), (self.loss,)

    def outputs(self, X, params: np.ndarray) -> np.ndarray:
        """The margin ``x . w + b`` of every row, as an ``(n, 1)`` array."""
        out = np.empty((X.shape[0], 1), dtype=params.dtype)
        if isinstance(X, CSRMatrix):
            kernels.csr_glm_margins(X.indptr, X.indices, X.data, params, out[:, 0])
        else:
            np.matmul(X, params[:-1], out=out[:, 0])
            out += params[-1]
        return out

    def eval_stats(self, X, y, params, stats, target_shift: float = 0.0) -> None:
        stats[:] = 0
        metrics.for_chunks(X.shape[0], lambda lo, hi: self._add_stats(
            self.outputs(block_rows(X, lo, hi), params)[:, 0], y[lo:hi], stats, target_shift))

    def arrays(self, params: np.ndarray) -> dict[str, np.ndarray]:
        return {"coef": params[: self.n_features].copy(), "intercept": params[self.n_features :].copy()}

    def describe(self) -> dict[str, object]:
        """What ``model.json`` records so that ``predict`` can rebuild this model."""
        return {"model": self.name, "task": self.task, "n_features": self.n_features}

    def check_labels(self, y: np.ndarray) -> str | None:
        return None


class LinearRegression(GeneralizedLinearModel):
    """Squared loss ½(x·w + b − y)²; metrics r2 and RMSE."""

    name = "linear"
    task = "regression"
    n_eval_stats = 4
    loss = kernels.SQUARED

    def _add_stats(self, margin, y, stats, target_shift: float = 0.0) -> None:
        metrics.regression_stats(margin, y, stats, target_shift)

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, float]:
        return metrics.regression_metrics(stats, n_rows)

    def predict(self, X, params: np.ndarray) -> np.ndarray:
        """The predicted target of every row."""
        return self.outputs(X, params)[:, 0]


class LogisticRegression(GeneralizedLinearModel):
    """Log-loss over classes 0 and 1; accuracy, log-loss, precision and recall of both classes.

    The data's two labels are :attr:`label_values` (0 and 1 unless set: LIBSVM's -1 and +1, say).
    Training sees them as 0 and 1 (:meth:`encode_labels`); :meth:`predict` answers in them.
    """

    name = "logistic"
    task = "classification"
    n_classes = 2
    n_eval_stats = 1 + 4
    loss = kernels.LOGISTIC

    def __init__(self, n_features: int, label_values: tuple[int, int] = (0, 1), trained: bool = False) -> None:
        super().__init__(n_features)
        self.label_values = label_values
        self.trained = trained  # label_values are those of a trained model, not the data's

    def _add_stats(self, margin, y, stats, target_shift: float = 0.0) -> None:  # the shift is regression's
        z = margin.astype(np.float64)
        stats[0] += float(np.sum(np.logaddexp(0.0, z) - y * z))
        metrics.confusion_add((z > 0).astype(np.int64), y.astype(np.int64), 2, stats[1:])

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, object]:
        return metrics.classification_metrics(stats, n_rows, 2)

    def predict(self, X, params: np.ndarray) -> np.ndarray:
        """The predicted label of every row (one of :attr:`label_values`)."""
        positive = self.outputs(X, params)[:, 0] > 0
        return np.where(positive, self.label_values[1], self.label_values[0]).astype(np.int64)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "classes": 2, "labels": list(self.label_values)}

    def check_labels(self, y: np.ndarray) -> str | None:
        low, high = self.label_values
        bad = (y != low) & (y != high)
        if not bad.any():
            return None
        if not self.trained:  # the data did not hold exactly two integer labels
            return f"logistic regression needs two labels (0 and 1, or two other integers such as -1 and +1); " \
                   f"found label {y[bad][0]:g}"
        return f"logistic regression needs labels {low} and {high}, as in training; found label {y[bad][0]:g}"

    def encode_labels(self, y: np.ndarray) -> np.ndarray:
        """``y`` (checked) as classes 0 and 1: ``y`` itself where the labels already are."""
        if self.label_values == (0, 1):
            return y
        return (y == self.label_values[1]).astype(y.dtype)
