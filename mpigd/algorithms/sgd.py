"""Mini-batch SGD: each step, every rank contributes its share of one global batch from its own rows."""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.update import Update
from mpigd.partition import block_counts, block_range


class MiniBatchSGD:
    """An epoch is one pass over the data in ``ceil(n_global / batch_size)`` steps.

    Each epoch every rank shuffles its own rows with its own generator (seeded from the run's
    seed and the rank), and at step ``s`` takes the ``s``-th of ``steps`` near-equal slices of
    that order. Every rank knows every rank's block size (the partition is arithmetic), so the
    global batch size of each step is known everywhere without communication.
    """

    name = "sgd"

    def __init__(self, gradient: GlobalGradient, update: Update, batch_size: int, rng: np.random.Generator,
                 size: int) -> None:
        self.gradient, self.update, self.rng = gradient, update, rng
        n_global = gradient.shard.n_global
        self.steps_per_epoch = -(-n_global // batch_size)
        local_counts = block_counts(n_global, size)
        # batch_rows[s]: rows in the global batch of step s, summed over every rank's slice.
        self.batch_rows = np.zeros(self.steps_per_epoch, dtype=np.int64)
        for count in local_counts:
            self.batch_rows += block_counts(int(count), self.steps_per_epoch)

    @property
    def steps(self) -> int:
        return self.update.steps

    def batch(self, order: np.ndarray, step: int) -> np.ndarray:
        """This rank's rows (local indices) in the global batch of ``step``."""
        lo, hi = block_range(order.size, self.steps_per_epoch, step)
        return order[lo:hi]

    def run_epoch(self, params: np.ndarray, epoch: int) -> float:
        """One pass over the data; return the mean of the steps' mini-batch objectives."""
        order = self.rng.permutation(self.gradient.shard.n_local)
        total = 0.0
        for step in range(self.steps_per_epoch):
            total += self.gradient(params, int(self.batch_rows[step]), self.batch(order, step))
            self.update(params, self.gradient.grad, self.update.rate())
        return total / self.steps_per_epoch
