"""A small multilayer perceptron: one or more hidden layers, a softmax head (classification) or a
squared-loss head (regression), dense rows.

The parameter buffer holds the weight matrices ``W0, W1, ...`` (``W_l`` is ``fan_in x fan_out``,
row-major) and then the biases ``b0, b1, ...``, so the first :attr:`n_penalized` entries are
exactly the weights; ``params.npz`` holds each of them under those names.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mpigd import kernels
from mpigd.data.csr import CSRMatrix
from mpigd.models import metrics
from mpigd.models.glm import block_rows
from mpigd.models.labels import ClassLabels

ACTIVATIONS = {"relu": kernels.RELU, "tanh": kernels.TANH}
TASKS = ("classification", "regression")


class MLP(ClassLabels):
    """``hidden`` gives the hidden widths (e.g. ``(64, 32)``); ``n_classes`` outputs for classification,
    one for regression. A classifier's classes are the data's labels as
    :class:`~mpigd.models.labels.ClassLabels` maps them."""

    name = "mlp"

    def __init__(self, n_features: int, hidden: tuple[int, ...], activation: str = "relu",
                 task: str = "classification", n_classes: int = 2) -> None:
        if not hidden or min(hidden) < 1:
            raise ValueError(f"an MLP needs at least one hidden layer of width >= 1, got {hidden}")
        if task == "classification" and n_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, got {n_classes}")
        self.n_features, self.hidden, self.activation, self.task = n_features, tuple(hidden), activation, task
        self.n_classes = n_classes if task == "classification" else 0
        self.start_labels(self.n_classes)
        self.n_outputs = n_classes if task == "classification" else 1
        self.widths = np.array([n_features, *hidden, self.n_outputs], dtype=np.int64)
        self.shapes = [(int(a), int(b)) for a, b in zip(self.widths[:-1], self.widths[1:])]
        self.n_penalized = sum(a * b for a, b in self.shapes)
        self.n_params = self.n_penalized + sum(b for _, b in self.shapes)
        self.n_eval_stats = 1 + self.n_classes**2 if task == "classification" else 4
        self._activation = ACTIVATIONS[activation]
        self._head = kernels.SOFTMAX_HEAD if task == "classification" else kernels.SQUARED_HEAD

    def init_params(self, dtype: np.dtype, seed: int = 0) -> np.ndarray:
        """Glorot-uniform weights (He-uniform under relu) and zero biases, drawn from ``seed`` alone, so
        every rank builds the same start without communication."""
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
        params = np.zeros(self.n_params, dtype=dtype)
        at = 0
        for fan_in, fan_out in self.shapes:
            limit = np.sqrt(6.0 / fan_in) if self.activation == "relu" else np.sqrt(6.0 / (fan_in + fan_out))
            params[at : at + fan_in * fan_out] = rng.uniform(-limit, limit, fan_in * fan_out)
            at += fan_in * fan_out
        return params

    def loss_grad(self, X, y, params, grad, rows=None) -> float:
        return kernels.mlp_loss_grad(X, y, rows, params, grad, self.widths, self._activation, self._head)

    def local_round(self, X) -> tuple[Callable, tuple, tuple]:
        """As :meth:`mpigd.models.glm.GeneralizedLinearModel.local_round` (the MLP takes dense rows only)."""
        return kernels.mlp_local_steps, (X,), (self.widths, self._activation, self._head)

    def sync_round(self, X) -> tuple[Callable, tuple, tuple]:
        """As :meth:`mpigd.models.glm.GeneralizedLinearModel.sync_round`."""
        return kernels.mlp_sync_steps, (X,), (self.widths, self._activation, self._head)

    def outputs(self, X, params: np.ndarray) -> np.ndarray:
        """Logits (classification) or predicted values (regression), ``(n, outputs)``."""
        out = np.empty((X.shape[0], self.n_outputs), dtype=params.dtype)
        kernels.mlp_outputs(X, params, self.widths, self._activation, out)
        return out

    def eval_stats(self, X, y, params, stats, target_shift: float = 0.0) -> None:
        stats[:] = 0

        def add(lo: int, hi: int) -> None:
            out, target = self.outputs(block_rows(X, lo, hi), params), y[lo:hi]
            if self.task == "regression":
                metrics.regression_stats(out[:, 0], target, stats, target_shift)
                return
            labels = target.astype(np.int64)
            stats[0] += metrics.softmax_log_loss(out, labels)
            metrics.confusion_add(np.argmax(out, axis=1), labels, self.n_classes, stats[1:])

        metrics.for_chunks(X.shape[0], add)

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, object]:
        if self.task == "regression":
            return metrics.regression_metrics(stats, n_rows)
        return metrics.classification_metrics(stats, n_rows, self.n_classes)

    def predict(self, X, params: np.ndarray) -> np.ndarray:
        out = self.outputs(X, params)
        return out[:, 0] if self.task == "regression" else self.labels_of(np.argmax(out, axis=1))

    def check_labels(self, y: np.ndarray) -> str | None:
        return super().check_labels(y) if self.task == "classification" else None

    def check_input(self, X) -> str | None:
        """Why this input cannot be used (the MLP reads dense rows only), or ``None``."""
        return "the mlp model needs dense input, not CSR" if isinstance(X, CSRMatrix) else None

    def arrays(self, params: np.ndarray) -> dict[str, np.ndarray]:
        arrays, at = {}, 0
        for l, (fan_in, fan_out) in enumerate(self.shapes):
            arrays[f"W{l}"] = params[at : at + fan_in * fan_out].reshape(fan_in, fan_out).copy()
            at += fan_in * fan_out
        for l, (_, fan_out) in enumerate(self.shapes):
            arrays[f"b{l}"] = params[at : at + fan_out].copy()
            at += fan_out
        return arrays

    def describe(self) -> dict[str, object]:
        return {"model": self.name, "task": self.task, "n_features": self.n_features, "hidden": list(self.hidden),
                "activation": self.activation, "classes": self.n_classes,
                **({"labels": list(self.label_values)} if self.task == "classification" else {})}
