"""Full-batch gradient descent: every step uses every row of every rank."""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.objective import GlobalGradient


class GradientDescent:
    """One step per epoch, on the exact global gradient: the allreduced sum of the ranks' local
    sums divided by the global row count (not a mean of local means, wrong for unequal blocks)."""

    name = "gd"

    def __init__(self, gradient: GlobalGradient, optimizer, lr: float) -> None:
        self.gradient, self.optimizer, self.lr = gradient, optimizer, lr
        self.steps = 0

    def run_epoch(self, params: np.ndarray, epoch: int) -> float:
        """Take one step; return the objective at the parameters the step started from."""
        loss = self.gradient(params, self.gradient.shard.n_global)
        self.optimizer.step(params, self.gradient.grad, self.lr)
        self.steps += 1
        return loss
