"""Learning-rate schedules: the step size as a pure function of the optimizer step number.

Being a function of the step count alone, a schedule needs no state of its own to checkpoint and
gives the same rate on every rank. Every schedule can start with a linear warm-up: over the
first ``warmup`` steps the rate climbs from ``lr/warmup`` to ``lr``, and the schedule proper
then runs from step 0 as if the warm-up had not been there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "cosine", "invscaling")


@dataclass(frozen=True)
class Schedule:
    """``lr`` shaped by ``kind``:

    - ``constant``: ``lr``;
    - ``step``: ``lr · gamma ** (t // step_size)``;
    - ``cosine``: ``lr · ½(1 + cos(π t / T))`` down to 0 at ``T = total_steps - warmup``;
    - ``invscaling``: ``lr / (1 + t) ** power`` (scikit-learn's ``eta0 / t ** power``, counted from 1).

    ``t`` is the number of steps taken after the warm-up.
    """

    lr: float
    kind: str = "constant"
    warmup: int = 0
    step_size: int = 100
    gamma: float = 0.1
    power: float = 0.25
    total_steps: int = 1

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0 for the first step)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = step - self.warmup
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.gamma ** (t // self.step_size)
        if self.kind == "cosine":
            horizon = max(1, self.total_steps - self.warmup)
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(t, horizon) / horizon))
        return self.lr / (1.0 + t) ** self.power


def make_schedule(config, total_steps: int) -> Schedule:
    """The schedule a :class:`~mpigd.config.Config` asks for, over a run of ``total_steps`` steps."""
    return Schedule(config.lr, config.schedule, config.warmup, config.step_size, config.gamma, config.power,
                    total_steps)
