"""Softmax (multinomial logistic) regression over ``k`` classes: ``params = [W (d x k, row-major), b (k)]``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mpigd import kernels
from mpigd.data.csr import CSRMatrix
from mpigd.models import metrics
from mpigd.models.glm import block_rows
from mpigd.models.labels import ClassLabels


class SoftmaxRegression(ClassLabels):
    """Mean log-loss of ``softmax(x W + b)`` against classes ``0 .. k-1``; the weights ``W`` are penalised,
    the intercepts ``b`` are not. ``params.npz`` holds ``coef`` (features x classes) and ``intercept``.

    Classes are the data's labels as :class:`~mpigd.models.labels.ClassLabels` maps them;
    :meth:`predict` answers in labels.
    """

    name = "softmax"
    task = "classification"

    def __init__(self, n_features: int, n_classes: int) -> None:
        if n_classes < 2:
            raise ValueError(f"softmax regression needs at least 2 classes, got {n_classes}")
        self.n_features, self.n_classes = n_features, n_classes
        self.n_penalized = n_features * n_classes
        self.n_params = self.n_penalized + n_classes
        self.n_outputs = n_classes
        self.n_eval_stats = 1 + n_classes * n_classes
        self.start_labels(n_classes)

    def init_params(self, dtype: np.dtype, seed: int = 0) -> np.ndarray:
        """Zeros: the objective is convex (strictly so with l2 > 0)."""
        return np.zeros(self.n_params, dtype=dtype)

    def loss_grad(self, X, y, params, grad, rows=None) -> float:
        if isinstance(X, CSRMatrix):
            return kernels.csr_softmax_loss_grad(X.indptr, X.indices, X.data, y, rows, params, grad,
                                                 self.n_classes)
        return kernels.softmax_loss_grad(X, y, rows, params, grad, self.n_classes)

    def local_round(self, X) -> tuple[Callable, tuple, tuple]:
        """As :meth:`mpigd.models.glm.GeneralizedLinearModel.local_round`; on dense rows, the MLP
        kernel's round without hidden layers (what :func:`mpigd.kernels.softmax_loss_grad` runs)."""
        if isinstance(X, CSRMatrix):
            return kernels.csr_softmax_local_steps, (X.indptr, X.indices, X.data), (self.n_classes,)
        return kernels.mlp_local_steps, (X,), self._as_network()

    def sync_round(self, X) -> tuple[Callable, tuple, tuple]:
        """As :meth:`mpigd.models.glm.GeneralizedLinearModel.sync_round` (dense rows: the MLP kernel's)."""
        if isinstance(X, CSRMatrix):
            return kernels.csr_softmax_sync_steps, (X.indptr, X.indices, X.data), (self.n_classes,)
        return kernels.mlp_sync_steps, (X,), self._as_network()

    def _as_network(self) -> tuple:
        """The MLP kernel's model arguments for this model: no hidden layer, a softmax head."""
        return np.array([self.n_features, self.n_classes], dtype=np.int64), kernels.RELU, kernels.SOFTMAX_HEAD

    def outputs(self, X, params: np.ndarray) -> np.ndarray:
        """The logits of every row, ``(n, k)``."""
        out = np.empty((X.shape[0], self.n_classes), dtype=params.dtype)
        if isinstance(X, CSRMatrix):
            kernels.csr_softmax_logits(X.indptr, X.indices, X.data, params, out)
        else:
            kernels.softmax_logits(X, params, out)
        return out

    def eval_stats(self, X, y, params, stats) -> None:
        stats[:] = 0

        def add(lo: int, hi: int) -> None:
            logits, labels = self.outputs(block_rows(X, lo, hi), params), y[lo:hi].astype(np.int64)
            stats[0] += metrics.softmax_log_loss(logits, labels)
            metrics.confusion_add(np.argmax(logits, axis=1), labels, self.n_classes, stats[1:])

        metrics.for_chunks(X.shape[0], add)

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, object]:
        return metrics.classification_metrics(stats, n_rows, self.n_classes)

    def predict(self, X, params: np.ndarray) -> np.ndarray:
        """The label of the most probable class of every row."""
        return self.labels_of(np.argmax(self.outputs(X, params), axis=1))

    def arrays(self, params: np.ndarray) -> dict[str, np.ndarray]:
        d, k = self.n_features, self.n_classes
        return {"coef": params[: d * k].reshape(d, k).copy(), "intercept": params[d * k :].copy()}

    def describe(self) -> dict[str, object]:
        return {"model": self.name, "task": self.task, "n_features": self.n_features, "classes": self.n_classes,
                "labels": list(self.label_values)}
