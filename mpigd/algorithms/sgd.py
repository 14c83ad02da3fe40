"""Mini-batch SGD: each step, every rank contributes its share of one global batch from its own rows."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from mpigd import kernels
from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.update import Update, UpdateDriven
from mpigd.guards import nonfinite_error
from mpigd.optim import SGD, Adam, Momentum, Nesterov, kernel_scalar
from mpigd.partition import block_counts, block_offsets


class MiniBatchSGD(UpdateDriven):
    """An epoch is one pass over the data in ``ceil(n_global / batch_size)`` steps.

    Each epoch every rank shuffles its own rows with its own generator (seeded from the run's
    seed and the rank), and at step ``s`` takes the ``s``-th of ``steps`` near-equal slices of
    that order. Every rank knows every rank's row count (from the shard), so the global batch
    size of each step is known everywhere without communication.

    For an exact resume the state holds the generator's state at the start of the current epoch
    and the steps done in it: the epoch's order is drawn again from that state, not stored.
    Subclasses (local SGD) group steps into rounds by overriding :meth:`_advance`.

    On one rank, without L1 and clipping, consecutive steps run as one kernel call
    (:class:`ChunkedSteps`; the same bits, but on wide sparse rows), as many as take about
    :data:`CHUNK_SECONDS`, ending at each multiple of ``checkpoint_every``: ``after_step`` (the
    caller's checks between steps) then runs once per call.
    """

    name = "sgd"

    def __init__(self, gradient: GlobalGradient, update: Update, batch_size: int, rng: np.random.Generator,
                 size: int, checkpoint_every: int = 0) -> None:
        self.gradient, self.update, self.rng = gradient, update, rng
        self.checkpoint_every = checkpoint_every
        n_global = gradient.shard.n_global
        self.steps_per_epoch = -(-n_global // batch_size)
        # Text readers split files by bytes, so the ranks' row counts come from the shard.
        counts = gradient.shard.counts
        local_counts = counts if counts is not None else block_counts(n_global, size)
        # batch_rows[s]: rows in the global batch of step s, summed over every rank's slice.
        self.batch_rows = np.zeros(self.steps_per_epoch, dtype=np.int64)
        for count in local_counts:
            self.batch_rows += block_counts(int(count), self.steps_per_epoch)
        # Where each step's slice of this rank's order starts (block_range of every step, computed
        # once): an array for the kernels that take many steps, and, like each step's global batch,
        # Python ints for a lookup once a step.
        self.bounds = block_offsets(gradient.shard.n_local, self.steps_per_epoch)
        self._bounds = self.bounds.tolist()
        self._batch_rows = self.batch_rows.tolist()
        self._cursor, self._total, self._epoch_rng = 0, 0.0, rng.bit_generator.state
        self._chunk = ChunkedSteps.for_run(self, size) if type(self) is MiniBatchSGD else None

    def batch(self, order: np.ndarray, step: int) -> np.ndarray:
        """This rank's rows (local indices) in the global batch of ``step``: the ``step``-th of
        ``steps_per_epoch`` near-equal slices of ``order`` (a permutation of the local rows)."""
        return order[self._bounds[step]:self._bounds[step + 1]]

    def run_epoch(self, params: np.ndarray, epoch: int, after_step: Callable[[], None] | None = None) -> float:
        """One pass over the data (the rest of it, after a resume mid-epoch); return the mean of
        the steps' mini-batch objectives. ``after_step`` is called after each update. Collective."""
        if self._cursor == 0:
            self._epoch_rng, self._total = self.rng.bit_generator.state, 0.0
        order = self.rng.permutation(self.gradient.shard.n_local)
        while self._cursor < self.steps_per_epoch:
            self._cursor += self._advance(params, order, self._cursor)
            if after_step is not None:
                after_step()
        self._cursor = 0
        return self._total / self.steps_per_epoch

    def _advance(self, params: np.ndarray, order: np.ndarray, step: int) -> int:
        """Take step ``step`` of the epoch, or more as one kernel call; add their objectives to the
        epoch's total; return the steps taken."""
        if self._chunk is not None and self.gradient.before_reduce is None:  # a fault hook fires between steps
            return self._chunk.run(params, order, step)
        self._total += self.gradient(params, self._batch_rows[step], self.batch(order, step))
        self.update(params, self.gradient.grad, self.update.rate())
        return 1

    @property
    def mid_epoch(self) -> bool:
        """Whether some of the current epoch's steps have been taken."""
        return bool(self._cursor)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state of this rank for an exact resume (see :mod:`mpigd.checkpoint`)."""
        # Between epochs (cursor 0) the next epoch starts from the generator as it is now.
        rng = self._epoch_rng if self._cursor else self.rng.bit_generator.state
        return {"steps": self.steps, "cursor": self._cursor, "total": self._total, "rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update.steps, self._cursor = int(state["steps"]), int(state["cursor"])
        self._total, self._epoch_rng = float(state["total"]), state["rng"]
        # Back to the start of the epoch: run_epoch draws the same order again and skips the done steps.
        self.rng.bit_generator.state = state["rng"]


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


def sparse_steps_plan(gradient: GlobalGradient, bounds: np.ndarray) -> tuple[int, float] | None:
    """Where the steps' slices ``bounds`` of CSR rows touch fewer than :data:`LAZY_BELOW` of the
    weights: the largest slice's rows and a step's non-zeros at the rows' average; else ``None``."""
    X, largest_batch = gradient.shard.X, int(np.diff(bounds).max(initial=0))
    nonzeros = X.nnz / max(X.shape[0], 1) * largest_batch
    return (largest_batch, nonzeros) if nonzeros < LAZY_BELOW * X.shape[1] else None


class ChunkedSteps:
    """Synchronous SGD's steps on one rank, many in one call of the model's
    :mod:`~mpigd.kernels.sync_round` kernel: the operations the step-by-step path runs, in its order.
    Plain SGD on wide CSR rows of a GLM takes :func:`~mpigd.kernels.csr_glm_lazy_sgd_steps` instead
    (the same steps to rounding, at the cost of their non-zeros)."""

    @classmethod
    def for_run(cls, sgd: MiniBatchSGD, size: int) -> "ChunkedSteps | None":
        """The chunked steps of ``sgd``, or ``None`` where its steps cannot run as one kernel call."""
        gradient, update = sgd.gradient, sgd.update
        sync_round = getattr(gradient.model, "sync_round", None)
        if size != 1 or sync_round is None or type(update.optimizer) not in RULES or update.l1 or gradient.clip:
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
        self.scalars = np.empty(1, dtype=dtype)
        self.lazy, self.slopes, self.lazy_steps = False, np.empty(0), 0
        plan = sparse_steps_plan(gradient, sgd.bounds) if self.kernel is kernels.csr_glm_sync_steps else None
        if self.rule == kernels.PLAIN and plan is not None:
            largest_batch, nonzeros = plan
            self.lazy, self.slopes = True, np.empty(largest_batch)
            self.lazy_steps = max(1, min(4096, int(LAZY_NONZEROS_A_CALL / max(nonzeros, 1.0))))
        # A run's first call takes one step (its time is unknown: it may be seconds, and the start-up
        # watchdog and an early signal wait for the first check); then as many steps as the last
        # call took CHUNK_SECONDS for (lazy calls: fixed multiples, see LAZY_NONZEROS_A_CALL).
        self.length = 1

    def run(self, params: np.ndarray, order: np.ndarray, first: int) -> int:
        """Steps from ``first`` on, as one kernel call; returns the steps taken (see MiniBatchSGD)."""
        sgd, gradient, update = self.sgd, self.sgd.gradient, self.sgd.update
        if self.lazy:  # the same calls whatever the clock (see LAZY_NONZEROS_A_CALL), the first one step
            step_in_call = update.steps % self.lazy_steps
            length = min(1 if update.steps == 0 else self.lazy_steps - step_in_call, sgd.steps_per_epoch - first)
        else:
            length = min(self.length, sgd.steps_per_epoch - first)
        if sgd.checkpoint_every:
            length = min(length, sgd.checkpoint_every - update.steps % sgd.checkpoint_every)
        schedule = update.schedule
        if schedule.kind == "constant" and update.steps >= schedule.warmup:
            rates = [schedule.lr] * length
        else:
            rates = [schedule(update.steps + h) for h in range(length)]
        self.rates[:length] = rates
        if self.rule == kernels.ADAM:
            self._adam_rates(rates)
        start = time.perf_counter()
        if self.lazy and float(self.rates[:length].max()) * gradient.l2 < 1:  # the scale stays positive
            taken, sgd._total, status = kernels.csr_glm_lazy_sgd_steps(
                *self.rows, gradient.shard.y, order, sgd.bounds, sgd.batch_rows, first, length, params, self.rates,
                gradient.l2, 0.5 * gradient.l2, gradient.largest, sgd._total, self.slopes, *self.model_arguments)
        else:
            taken, sgd._total, status = self.kernel(
                *self.rows, gradient.shard.y, order, sgd.bounds, sgd.batch_rows, first, length, params,
                gradient.buffer, self.rates, self.scalar(gradient.l2), 0.5 * gradient.l2, gradient.model.n_penalized,
                gradient.largest, self.rule, self.state, self.coefficients, self.adam, sgd._total, self.scalars,
                *self.model_arguments)
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
