"""Full-batch gradient descent: every step uses every row of every rank."""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.update import Update


class GradientDescent:
    """One step per epoch, on the exact global gradient: the allreduced sum of the ranks' local
    sums divided by the global row count (not a mean of local means, wrong for unequal blocks).
    With ``l1 > 0`` the step is a proximal gradient step (ISTA)."""

    name = "gd"
    steps_per_epoch = 1

    def __init__(self, gradient: GlobalGradient, update: Update) -> None:
        self.gradient, self.update = gradient, update

    @property
    def steps(self) -> int:
        return self.update.steps

    def run_epoch(self, params: np.ndarray, epoch: int) -> float:
        """Take one step; return the objective at the parameters the step started from."""
        loss = self.gradient(params, self.gradient.shard.n_global)
        self.update(params, self.gradient.grad, self.update.rate())
        return loss
