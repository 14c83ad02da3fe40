"""Update rules and regularisation, applied identically on every rank after the gradient is summed."""

from __future__ import annotations

import numpy as np


def l2_penalty(params: np.ndarray, n_penalized: int, l2: float) -> float:
    """(l2/2)·‖w‖², where ``w`` is the first ``n_penalized`` entries of ``params``."""
    weights = params[:n_penalized].astype(np.float64, copy=False)
    return 0.5 * l2 * float(weights @ weights)


def add_l2(params: np.ndarray, grad: np.ndarray, n_penalized: int, l2: float) -> float:
    """Add the gradient of (l2/2)·‖w‖² to ``grad`` in place and return the penalty's value.

    ``w`` is the first ``n_penalized`` entries of ``params``: intercepts are not penalised.
    """
    if l2 == 0.0:
        return 0.0
    grad[:n_penalized] += l2 * params[:n_penalized]
    return l2_penalty(params, n_penalized, l2)


class SGD:
    """Plain (stochastic) gradient descent: ``params -= lr * grad``."""

    name = "sgd"

    def __init__(self, n_params: int, dtype: np.dtype) -> None:
        self._step = np.empty(n_params, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        np.multiply(grad, lr, out=self._step)
        params -= self._step

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays an exact resume needs (momentum, moments...); plain SGD keeps none."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned (copied into this optimizer's own arrays)."""
