"""Mini-batch SGD: each step, every rank contributes its share of one global batch from its own rows."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpigd.algorithms.chunked import ChunkedSteps
from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.sparse_exchange import SparseExchange
from mpigd.algorithms.update import Update, UpdateDriven
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

    On one rank consecutive steps run as one kernel call
    (:class:`~mpigd.algorithms.chunked.ChunkedSteps`; the same bits, but on wide sparse rows), as
    many as take about :data:`~mpigd.algorithms.chunked.CHUNK_SECONDS`, ending at each multiple of
    ``checkpoint_every``: ``after_step`` (the caller's checks between steps) then runs once per call.
    On several ranks (softmax: on one too), plain SGD on wide CSR rows gathers each step's non-zero
    gradient entries instead of summing every weight's, in calls too
    (:class:`~mpigd.algorithms.sparse_exchange.SparseExchange`).
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
        plain = type(self) is MiniBatchSGD
        self._chunk = ChunkedSteps.for_run(self, size) if plain else None
        self._exchange = SparseExchange.for_run(self) if plain else None

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
        if self._exchange is not None:
            return self._exchange.run(params, order, step)
        if self._chunk is not None and self.gradient.before_reduce is None:  # a fault hook fires between steps
            return self._chunk.run(params, order, step)
        self._total += self.gradient(params, self._batch_rows[step], self.batch(order, step))
        self.update(params, self.gradient.grad, self.update.rate())
        return 1

    @property
    def gradient_exchange(self) -> str:
        """How a step's gradient crosses the ranks: ``allreduce`` of every weight's, or ``allgather``
        of its non-zeros (:class:`~mpigd.algorithms.sparse_exchange.SparseExchange`)."""
        return "allgather" if self._exchange is not None else "allreduce"

    @property
    def reduced_bytes_per_step(self) -> int:
        """Bytes a step allreduces: none where the steps gather their gradients' non-zeros instead."""
        return 0 if self._exchange is not None else self.gradient.reduced_bytes

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
