"""Synchronous SGD's steps on one rank, many in one kernel call (:class:`ChunkedSteps`), and where
steps on CSR rows touch so few of the weights that they run lazily (:func:`sparse_steps_plan`)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from mpigd import kernels
from mpigd.algorithms.objective import GlobalGradient
from mpigd.guards import nonfinite_error
from mpigd.optim import SGD, Adam, Momentum, Nesterov, kernel_scalar
from mpigd.schedules import Schedule

if TYPE_CHECKING:
    from mpigd.algorithms.sgd import MiniBatchSGD

# A call of the step kernel takes about this long: the caller's checks between steps (the watchdog,
# preemption) then wait no longer than that.
CHUNK_SECONDS = 0.01
# Plain SGD on CSR rows keeps its weights as a scale times a vector (kernels/lazy_sgd.py) where a
# step writes fewer than this fraction of them: one-row steps on 10^5 features of which 50 are
# non-zero took 280-430x scikit-learn's time, in passes over weights the row does not touch.
LAZY_BELOW = 1 / 8
# Its kernel calls end where the steps' count reaches a multiple of a fixed number of steps (about
# this many non-zeros visited a call), not where CHUNK_SECONDS does: folding the scale into the
# weights at a call's end rounds them, so calls that end where the clock says gave other bits run
# after run, and a run resumed from a checkpoint taken between calls other bits than an
# uninterrupted one.
LAZY_NONZEROS_A_CALL = 1 << 21
RULES = {SGD: kernels.PLAIN, Momentum: kernels.MOMENTUM, Nesterov: kernels.NESTEROV, Adam: kernels.ADAM}


def scheduled_rates(schedule: Schedule, steps: int, length: int) -> list[float]:
    """The learning rates of the ``length`` steps after ``steps``."""
    if schedule.kind == "constant" and steps >= schedule.warmup:
        return [schedule.lr] * length
    return [schedule(steps + h) for h in range(length)]


def lazy_steps_a_call(nonzeros: float) -> int:
    """The steps of a lazy call whose steps visit ``nonzeros`` non-zeros each: about
    :data:`LAZY_NONZEROS_A_CALL` in all, at most 4096 steps."""
    return max(1, min(4096, int(LAZY_NONZEROS_A_CALL / max(nonzeros, 1.0))))


def fixed_call(steps: int, steps_a_call: int) -> int:
    """The steps from ``steps`` to the next multiple of ``steps_a_call``; a run's first call takes
    one step (its time is unknown, and the start-up watchdog and an early signal wait for its check)."""
    return 1 if steps == 0 else steps_a_call - steps % steps_a_call


def call_length(sgd: MiniBatchSGD, first: int, longest: int) -> int:
    """The steps a call from step ``first`` of the epoch takes: up to ``longest``, ending at the
    epoch's end and at each ``checkpoint_every`` multiple."""
    length = min(longest, sgd.steps_per_epoch - first)
    if sgd.checkpoint_every:
        length = min(length, sgd.checkpoint_every - sgd.update.steps % sgd.checkpoint_every)
    return length


def typical_slice(gradient: GlobalGradient, bounds: np.ndarray) -> tuple[int, float]:
    """The largest of the steps' slices ``bounds`` of this rank's CSR rows, in rows, and its
    non-zeros at the rows' average length."""
    X, largest_batch = gradient.shard.X, int(np.diff(bounds).max(initial=0))
    return largest_batch, X.nnz / max(X.shape[0], 1) * largest_batch


def sparse_steps_plan(gradient: GlobalGradient, bounds: np.ndarray) -> tuple[int, float] | None:
    """Where the steps' slices ``bounds`` of CSR rows touch fewer than :data:`LAZY_BELOW` of the
    weights: :func:`typical_slice`; else ``None``."""
    largest_batch, nonzeros = typical_slice(gradient, bounds)
    return (largest_batch, nonzeros) if nonzeros < LAZY_BELOW * gradient.shard.X.shape[1] else None


class ChunkedSteps:
    """Synchronous SGD's steps on one rank, many in one call of the model's
    :mod:`~mpigd.kernels.sync_round` kernel: the operations the step-by-step path runs, in its order.
    Plain SGD on wide CSR rows of a GLM, without L1 and clipping, takes
    :func:`~mpigd.kernels.csr_glm_lazy_sgd_steps` instead (the same steps to rounding, at the cost
    of their non-zeros)."""

    @classmethod
    def for_run(cls, sgd: MiniBatchSGD, size: int) -> "ChunkedSteps | None":
        """The chunked steps of ``sgd``, or ``None`` where its steps cannot run as one kernel call."""
        gradient, update = sgd.gradient, sgd.update
        sync_round = getattr(gradient.model, "sync_round", None)
        if size != 1 or sync_round is None or type(update.optimizer) not in RULES:
            return None
        return cls(sgd, sync_round(gradient.shard.X))

    def __init__(self, sgd: MiniBatchSGD, round_kernel: tuple) -> None:
        self.sgd, (self.kernel, self.rows, self.model_arguments) = sgd, round_kernel
        gradient, optimizer = sgd.gradient, sgd.update.optimizer
        dtype = gradient.buffer.dtype
        self.scalar = kernel_scalar(dtype)
        self.optimizer, self.rule = optimizer, RULES[type(optimizer)]
        # The optimizer's arrays and coefficients, rounded into the dtype as its step() rounds them.
        none = np.empty(0, dtype=dtype)
        if isinstance(optimizer, Adam):
            self.state = (optimizer.m, optimizer.v, optimizer._denominator)
            self.coefficients = np.array([0.0, 1.0 - optimizer.beta1, 1.0 - optimizer.beta2, optimizer.beta1,
                                          optimizer.beta2], dtype=dtype)
        else:
            self.state = (getattr(optimizer, "velocity", none), none, none)
            self.coefficients = np.array([getattr(optimizer, "momentum", 0.0), 0, 0, 0, 0], dtype=dtype)
        self.rates = np.empty(sgd.steps_per_epoch, dtype=dtype)
        self.adam = np.empty((sgd.steps_per_epoch if self.rule == kernels.ADAM else 0, 2))
        self.thresholds = np.zeros(sgd.steps_per_epoch)  # L1's proximal step, rate·l1
        self.scalars = np.empty(1, dtype=dtype)
        self.lazy, self.slopes, self.lazy_steps = False, np.empty(0), 0
        plan = sparse_steps_plan(gradient, sgd.bounds) if self.kernel is kernels.csr_glm_sync_steps else None
        if self.rule == kernels.PLAIN and plan is not None and not sgd.update.l1 and not gradient.clip:
            largest_batch, nonzeros = plan
            self.lazy, self.slopes = True, np.empty(largest_batch)
            self.lazy_steps = lazy_steps_a_call(nonzeros)
        # A run's first call takes one step (its time is unknown: it may be seconds, and the start-up
        # watchdog and an early signal wait for the first check); then as many steps as the last
        # call took CHUNK_SECONDS for (lazy calls: fixed multiples, see LAZY_NONZEROS_A_CALL).
        self.length = 1

    def run(self, params: np.ndarray, order: np.ndarray, first: int) -> int:
        """Steps from ``first`` on, as one kernel call; returns the steps taken (see MiniBatchSGD)."""
        sgd, gradient, update = self.sgd, self.sgd.gradient, self.sgd.update
        # Lazy calls are the same whatever the clock (see LAZY_NONZEROS_A_CALL).
        length = call_length(sgd, first, fixed_call(update.steps, self.lazy_steps) if self.lazy else self.length)
        rates = scheduled_rates(update.schedule, update.steps, length)
        self.rates[:length] = rates
        if self.rule == kernels.ADAM:
            self._adam_rates(rates)
        if update.l1:
            self.thresholds[:length] = [rate * update.l1 for rate in rates]  # Update's lr * (l1 * 1)
        start = time.perf_counter()
        if self.lazy and float(self.rates[:length].max()) * gradient.l2 < 1:  # the scale stays positive
            taken, sgd._total, status = kernels.csr_glm_lazy_sgd_steps(
                *self.rows, gradient.shard.y, order, sgd.bounds, sgd.batch_rows, first, length, params, self.rates,
                gradient.l2, 0.5 * gradient.l2, gradient.largest, sgd._total, self.slopes, *self.model_arguments)
        else:
            taken, sgd._total, status = self.kernel(
                *self.rows, gradient.shard.y, order, sgd.bounds, sgd.batch_rows, first, length, params,
                gradient.buffer, self.rates, self.scalar(gradient.l2), 0.5 * gradient.l2, float(update.l1),
                self.thresholds, float(gradient.clip), gradient.model.n_penalized, gradient.largest, self.rule,
                self.state, self.coefficients, self.adam, sgd._total, self.scalars, *self.model_arguments)
        seconds = time.perf_counter() - start
        gradient.compute_seconds += seconds
        gradient.reductions += taken
        gradient.comm.count_unsent(taken, gradient.reduced_bytes)  # as a step at a time counts them
        update.steps += taken
        if self.rule == kernels.ADAM:
            self.optimizer.t[0] += taken
        if status != kernels.DONE:
            raise nonfinite_error(gradient.comm.rank, local=status == kernels.LOCAL_NONFINITE)
        self.length = max(1, min(4096, int(CHUNK_SECONDS * length / max(seconds, 1e-9))))
        return taken

    def _adam_rates(self, rates: list[float]) -> None:
        """Each step's bias-corrected rate and epsilon, in float64, as :meth:`Adam.step` computes them
        from the schedule's ``rates`` (Python floats, not rounded into the dtype)."""
        adam = self.optimizer
        t = int(adam.t[0])
        for h, rate in enumerate(rates):
            correction = math.sqrt(1.0 - adam.beta2 ** (t + h + 1))
            self.adam[h, 0] = rate * correction / (1.0 - adam.beta1 ** (t + h + 1))
            self.adam[h, 1] = adam.eps * correction
