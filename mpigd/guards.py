"""Numerical guards: cheap finiteness tests and global-norm clipping on the gradient path, and the
check that ends a run whose objective runs away.

The finiteness tests run in kernels compiled without ``fastmath`` (:mod:`mpigd.kernels.finish`):
under the flags that assume no NaN or Inf, a compiler may optimise such a test away (see
../shared/RELIABILITY.md).
"""

from __future__ import annotations

import math

import numpy as np

from mpigd import kernels
from mpigd.config import SOLVERS
from mpigd.errors import DivergedError


def finite(buffer: np.ndarray) -> bool:
    """Whether every entry of ``buffer`` is finite, in one pass and no allocation."""
    return bool(kernels.all_finite(buffer))


def clip_norm(grad: np.ndarray, max_norm: float) -> float:
    """Scale ``grad`` in place so that its Euclidean norm is at most ``max_norm``; return the norm
    it had. Run on the reduced gradient, it does the same on every rank."""
    # The kernel the one-rank kernel calls clip with (kernels/sync_round.py): a step taken alone
    # and many in one call clip alike.
    return float(kernels.clip_to_norm(grad, grad.shape[0], max_norm, np.empty(1, dtype=grad.dtype)))


def nonfinite_error(rank: int, local: bool) -> DivergedError:
    """The error for a gradient that became NaN or Inf, naming the rank where it started if known."""
    if local:
        return DivergedError(f"the local gradient of rank {rank} is NaN or Inf before the allreduce "
                             "(bad values in its rows, or an overflow)")
    return DivergedError("the global gradient is NaN or Inf although every rank's local gradient was finite "
                         "(the sum or the L2 term overflowed)")


# A learning rate too large grows the objective geometrically; waiting for an overflow let such a
# run end with exit 0 and a loss of 1e38 (float32's range), or go on for hundreds of epochs.
# No run that is finding its way has an objective ten thousand times its first epoch's.
RUNAWAY_GROWTH = 1e4
# A first objective below this is an exact fit at the start, whose rounding noise may grow by any
# factor without meaning anything.
SMALLEST_REFERENCE = 1e-8


def divergence_advice(algo: str, lr: float) -> str:
    """What a diverged run of ``algo`` could try: a smaller learning rate for gd/sgd/local-sgd; a
    solver reads none, so it is pointed at the data and the penalty instead."""
    if algo in SOLVERS:
        return "check the data for extreme values (--standardize scales the features) or add --l2"
    return f"try a smaller learning rate than {lr:g} or --clip-grad-norm"


class ObjectiveGuard:
    """Ends a run whose objective is NaN or Inf, or more than :data:`RUNAWAY_GROWTH` times the
    first value it was given (this launch's first epoch). Fed allreduced values only, so every
    rank raises at the same epoch. ``advice`` ends the message (:func:`divergence_advice`)."""

    def __init__(self, advice: str) -> None:
        self.advice = advice
        self.first: float | None = None
        self.first_epoch = 0

    def check(self, value: float, what: str, epoch: int, steps: int) -> None:
        """A :class:`DivergedError` naming ``steps`` and ``epoch`` if ``value`` is not finite or ran away."""
        if not math.isfinite(value):
            self._diverged(f"{what} is {value}", epoch, steps)
        if self.first is None:
            self.first, self.first_epoch = value, epoch
        elif value > RUNAWAY_GROWTH * max(self.first, SMALLEST_REFERENCE):
            self._diverged(f"{what} grew to {value:.6g}, over {RUNAWAY_GROWTH:g} times its "
                           f"{self.first:.6g} in epoch {self.first_epoch}", epoch, steps)

    def _diverged(self, what: str, epoch: int, steps: int) -> None:
        raise DivergedError(f"training diverged at step {steps} (epoch {epoch}): {what}; {self.advice}")
