"""What every model offers the trainer: parameter layout, the fused kernels, label checks, metrics."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Model(Protocol):
    """A model over ``n_features`` inputs whose parameters live in one contiguous buffer.

    The first :attr:`n_penalized` entries of the buffer are the weights that regularisation
    applies to; the rest (intercepts, biases) are not penalised.
    """

    name: str
    task: str  # "regression" or "classification"
    n_features: int
    n_params: int
    n_penalized: int
    n_eval_stats: int

    def init_params(self, dtype: np.dtype, seed: int = 0) -> np.ndarray:
        """The starting parameter buffer, a function of ``seed`` alone (the same on every rank)."""

    def loss_grad(self, X, y: np.ndarray, params: np.ndarray, grad: np.ndarray,
                  rows: np.ndarray | None = None) -> float:
        """Write the loss gradient summed over the rows (all, or those in ``rows``) into ``grad``
        and return the summed loss. ``X`` is a dense array or (linear models) a ``CSRMatrix``."""

    def outputs(self, X, params: np.ndarray) -> np.ndarray:
        """Margins, logits or predicted values of every row, ``(n, outputs)``."""

    def predict(self, X, params: np.ndarray) -> np.ndarray:
        """The predicted class (int64) or value (float) of every row."""

    def eval_stats(self, X: np.ndarray, y: np.ndarray, params: np.ndarray, stats: np.ndarray) -> None:
        """Write the sums the metrics need (:attr:`n_eval_stats` of them) into ``stats``;
        ``stats[0]`` is always the summed loss. Regression models also take ``target_shift``, the
        global mean of the targets (:func:`mpigd.models.metrics.regression_stats`)."""

    def metrics(self, stats: np.ndarray, n_rows: int) -> dict[str, float]:
        """Metrics from the sums of :meth:`eval_stats` over ``n_rows`` rows (all ranks' sums)."""

    def check_labels(self, y: np.ndarray) -> str | None:
        """Why these labels cannot be used with this model, or ``None`` when they can."""

    def arrays(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """The named arrays saved in ``params.npz``, in buffer order (concatenated they are ``params``)."""

    def describe(self) -> dict[str, object]:
        """What ``model.json`` records so that the model can be rebuilt (``models.from_description``)."""

    # Optional: ``local_round(X)``, the kernel that takes a local SGD round's later steps in one call
    # on the rows ``X``, the arrays of ``X`` it takes and the model's own arguments to it
    # (mpigd/algorithms/local_sgd.py; a model without it takes a kernel call a step).
