"""Full-batch gradient descent: every step uses every row of every rank."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.update import Update, UpdateDriven


class GradientDescent(UpdateDriven):
    """One step per epoch, on the exact global gradient: the allreduced sum of the ranks' local
    sums divided by the global row count (not a mean of local means, wrong for unequal blocks).
    With ``l1 > 0`` the step is a proximal gradient step (ISTA)."""

    name = "gd"
    steps_per_epoch = 1

    def __init__(self, gradient: GlobalGradient, update: Update) -> None:
        self.gradient, self.update = gradient, update
        # Where a checkpoint taken between the step and the end of the epoch left off.
        self._done, self._loss = 0, 0.0

    def run_epoch(self, params: np.ndarray, epoch: int, after_step: Callable[[], None] | None = None) -> float:
        """Take one step; return the objective at the parameters the step started from.

        ``after_step`` is called once the step is applied (checkpoints, preemption). Collective.
        """
        if not self._done:
            self._loss = self.gradient(params, self.gradient.shard.n_global)
            self.update(params, self.gradient.grad, self.update.rate())
            self._done = 1
            if after_step is not None:
                after_step()
        self._done = 0
        return self._loss

    @property
    def mid_epoch(self) -> bool:
        """Whether the current epoch's step has been taken (a checkpoint made before its evaluation)."""
        return bool(self._done)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state for an exact resume (see :mod:`mpigd.checkpoint`)."""
        return {"steps": self.steps, "cursor": self._done, "total": self._loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update.steps, self._done, self._loss = int(state["steps"]), int(state["cursor"]), float(state["total"])
