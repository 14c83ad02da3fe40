"""Linear and logistic regression: weights and an intercept, ``params = [w_1 .. w_d, b]``."""

from __future__ import annotations

import numpy as np

from mpigd import kernels


class GeneralizedLinearModel:
    """Shared layout and plumbing; subclasses name their kernels and metrics."""

    name = ""
    n_eval_stats = 0

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.n_params = n_features + 1
        self.n_penalized = n_features

    def init_params(self, dtype: np.dtype) -> np.ndarray:
        return np.zeros(self.n_params, dtype=dtype)

    def loss_grad(self, X, y, params, grad, rows=None) -> float:
        if rows is None:
            return kernels.glm_loss_grad(X, y, params, grad, self.loss)
        return kernels.glm_loss_grad_rows(X, y, rows, params, grad, self.loss)

    def arrays(self, params: np.ndarray) -> dict[str, np.ndarray]:
        return {"coef": params[: self.n_features].copy(), "intercept": params[self.n_features :].copy()}

    def check_labels(self, y: np.ndarray) -> str | None:
        return None


class LinearRegression(GeneralizedLinearModel):
    """Squared loss ½(x·w + b − y)²; metrics r2 and RMSE."""

    name = "linear"
    n_eval_stats = 4
    loss = kernels.SQUARED

    def eval_stats(self, X, y, params, stats) -> None:
        kernels.squared_eval(X, y, params, stats)

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, float]:
        _, squared_error, total, total_squares = (float(s) for s in stats)
        spread = total_squares - total * total / n_rows
        return {
            "r2": 1.0 - squared_error / spread if spread > 0 else float("nan"),
            "rmse": float(np.sqrt(squared_error / n_rows)),
        }


class LogisticRegression(GeneralizedLinearModel):
    """Log-loss with labels 0 and 1; metric accuracy."""

    name = "logistic"
    n_eval_stats = 2
    loss = kernels.LOGISTIC

    def eval_stats(self, X, y, params, stats) -> None:
        kernels.logistic_eval(X, y, params, stats)

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, float]:
        return {"accuracy": float(stats[1]) / n_rows}

    def check_labels(self, y: np.ndarray) -> str | None:
        bad = (y != 0) & (y != 1)
        if bad.any():
            return f"logistic regression needs labels 0 and 1; found {y[bad][0]:g}"
        return None
