"""When to stop: the objective has stopped changing (``tol``), or the held-out loss has stopped
improving (``patience``). Fed only allreduced values, so every rank decides the same."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


REASONS = ("max_epochs", "tol", "patience")


class Stopping:
    """Tracks the objective per epoch and the held-out loss per evaluation; keeps the best parameters.

    ``tol``: stop when ``|f_prev − f| <= tol · max(|f_prev|, |f|, tiny)`` between two epochs.
    ``patience``: stop after that many evaluations in a row without a lower held-out loss; the
    parameters of the best evaluation are then restored (as scikit-learn's early stopping does).
    """

    def __init__(self, tol: float, patience: int) -> None:
        self.tol, self.patience = tol, patience
        self.previous = math.inf
        self.best = math.inf
        self.best_params: np.ndarray | None = None
        self.best_epoch = 0
        self.bad_evaluations = 0
        self.reason = "max_epochs"

    @property
    def stopped(self) -> bool:
        """Whether ``tol`` or ``patience`` ended the run (a resumed run that had stopped stays stopped)."""
        return self.reason != "max_epochs"

    def after_epoch(self, objective: float) -> bool:
        """Whether the relative change of the objective fell to ``tol`` or below."""
        previous, self.previous = self.previous, objective
        if self.tol and math.isfinite(previous):
            if abs(previous - objective) <= self.tol * max(abs(previous), abs(objective), 1e-300):
                self.reason = "tol"
                return True
        return False

    def after_evaluation(self, held_out_loss: float, params: np.ndarray, epoch: int) -> bool:
        """Whether ``patience`` evaluations have passed without a better held-out loss."""
        if not self.patience:
            return False
        if held_out_loss < self.best:
            self.best, self.best_epoch, self.bad_evaluations = held_out_loss, epoch, 0
            self.best_params = params.copy()
            return False
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            self.reason = "patience"
            return True
        return False

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What a resumed run needs to stop where an uninterrupted one would: JSON-able numbers
        (an infinite loss as ``None``) and the best parameters so far, if any."""
        numbers = {"previous": _finite_or_none(self.previous), "best": _finite_or_none(self.best),
                   "best_epoch": self.best_epoch, "bad_evaluations": self.bad_evaluations, "reason": self.reason}
        return numbers, ({} if self.best_params is None else {"best_params": self.best_params})

    def load_state_dict(self, numbers: dict[str, Any], arrays: dict[str, np.ndarray], params: np.ndarray) -> None:
        """Take back :meth:`state_dict`'s state; a ``ValueError`` or ``TypeError`` if it does not fit ``params``."""
        previous, best = numbers["previous"], numbers["best"]
        self.previous = math.inf if previous is None else float(previous)
        self.best = math.inf if best is None else float(best)
        self.best_epoch, self.bad_evaluations = _count(numbers["best_epoch"]), _count(numbers["bad_evaluations"])
        reason = numbers.get("reason", "max_epochs")  # not in checkpoints from before it was saved
        if reason not in REASONS:
            raise ValueError(f"stop reason {reason!r} is not one of {', '.join(REASONS)}")
        self.reason = reason
        best_params = arrays.get("best_params")
        if best_params is not None and (best_params.shape != params.shape or best_params.dtype != params.dtype):
            raise ValueError(f"best parameters {best_params.dtype}{best_params.shape} do not fit the model")
        self.best_params = None if best_params is None else best_params.copy()

    def restore_best(self, params: np.ndarray) -> bool:
        """Put the best held-out parameters back into ``params`` when patience stopped the run."""
        if self.reason == "patience" and self.best_params is not None:
            params[:] = self.best_params
            return True
        return False


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{value!r} is not a count")
    return value
