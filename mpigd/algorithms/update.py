"""One parameter update, shared by every algorithm: the scheduled rate, the optimizer, the L1 proximal step."""

from __future__ import annotations

import numpy as np

from mpigd.optim import SGD, apply_l1
from mpigd.schedules import Schedule


class Update:
    """``params ← prox_{lr·l1}(optimizer step with rate lr)``, with ``lr`` from the schedule.

    :attr:`steps` counts optimizer steps (local SGD counts its local steps), and is what the
    schedule is evaluated at. Every rank runs the same updates on the same (reduced) numbers,
    so parameters and optimizer state stay identical without communication.
    """

    def __init__(self, optimizer: SGD, schedule: Schedule, l1: float, n_penalized: int) -> None:
        self.optimizer, self.schedule, self.l1, self.n_penalized = optimizer, schedule, l1, n_penalized
        self.steps = 0

    def rate(self) -> float:
        """The learning rate of the next step."""
        return self.schedule(self.steps)

    def __call__(self, params: np.ndarray, grad: np.ndarray, lr: float, steps: int = 1) -> None:
        """Apply one update standing for ``steps`` steps (more than one only in local SGD)."""
        self.optimizer.step(params, grad, lr)
        apply_l1(params, self.n_penalized, lr * (self.l1 * steps))
        self.steps += steps


class UpdateDriven:
    """For algorithms whose steps are counted, and whose optimizer is held, by their :class:`Update`
    (what checkpoints and the fault hook read)."""

    update: Update
    steps_per_epoch: int

    @property
    def steps(self) -> int:
        return self.update.steps

    @property
    def evaluations(self) -> int:
        """Full passes over the data so far: one per epoch (gd: one per step)."""
        return self.steps // self.steps_per_epoch

    @property
    def optimizer(self) -> SGD:
        return self.update.optimizer
