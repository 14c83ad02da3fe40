"""Synchronous plain SGD on wide CSR rows: each step gathers the non-zero part of every rank's
gradient instead of summing every weight's (:mod:`mpigd.kernels.sparse_exchange`)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from mpigd import kernels
from mpigd.algorithms.chunked import (LAZY_BELOW, call_length, fixed_call, lazy_steps_a_call, scheduled_rates,
                                      typical_slice)
from mpigd.guards import nonfinite_error
from mpigd.kernels.sparse_exchange import FLAG, LOSS, message_size
from mpigd.optim import SGD

if TYPE_CHECKING:
    from mpigd.algorithms.sgd import MiniBatchSGD


def order_ends(indptr: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``ends[i]``: the non-zeros of the first ``i`` rows of ``order``."""
    return np.concatenate(([0], np.cumsum(np.diff(indptr)[order])))


def slice_nonzeros(ends: np.ndarray, bounds: np.ndarray, n_features: int) -> np.ndarray:
    """The non-zeros of each slice ``bounds[s]:bounds[s + 1]`` of an order whose :func:`order_ends`
    are ``ends``, and no more than the features: room for every distinct column the slice holds."""
    return np.minimum(ends[bounds[1:]] - ends[bounds[:-1]], n_features).astype(np.int64)


# The round kernel a model's CSR rows take on one rank -> the kernel that writes its pairs.
PAIRS = {kernels.csr_glm_sync_steps: kernels.csr_glm_gradient_pairs,
         kernels.csr_softmax_sync_steps: kernels.csr_softmax_gradient_pairs}


class SparseExchange:
    """Synchronous plain SGD's steps where the rows are CSR rows of a linear, logistic or softmax
    model, without L1 and clipping, and the ranks' slices at the rows' average length hold fewer
    non-zeros than :data:`~mpigd.algorithms.chunked.LAZY_BELOW` of the features: on several ranks, and for
    softmax on one rank too (a GLM's steps there are :class:`~mpigd.algorithms.chunked.ChunkedSteps`'
    lazy kernel calls, without a message between steps).

    Each step: this rank's slice's gradient as (column, values) pairs
    (:func:`~mpigd.kernels.csr_glm_gradient_pairs`, :func:`~mpigd.kernels.csr_softmax_gradient_pairs`),
    one allgather of every rank's message (room for the most non-zeros any rank's slice of the step
    holds, agreed for a call's steps at its start), and the same update on every rank from the
    gathered pairs (:func:`~mpigd.kernels.apply_gathered_pairs`) with the weights as a scale times a vector: a
    step costs its non-zeros and a message of them, not the features. The preemption flag rides in
    each message; the fault hook sees the loss.

    The steps run in calls that end where the steps' count reaches a multiple of
    :attr:`steps_a_call` (and at each ``checkpoint_every`` multiple and the epoch's end), where the
    scale is folded into the weights: as :class:`~mpigd.algorithms.chunked.ChunkedSteps`' lazy
    calls, so that a run repeats its bits and a resumed run ends on the uninterrupted one's. The
    caller's checks between steps run once a call. The same steps as the dense path to rounding.
    """

    @classmethod
    def for_run(cls, sgd: MiniBatchSGD) -> "SparseExchange | None":
        """The sparse exchange of ``sgd``'s steps, or ``None`` where they sum every weight. Collective
        where the run has several ranks and plain SGD of a model with a CSR round kernel."""
        gradient, update = sgd.gradient, sgd.update
        comm, sync_round = gradient.comm, getattr(gradient.model, "sync_round", None)
        if sync_round is None or type(update.optimizer) is not SGD or update.l1 or gradient.clip:
            return None
        round_kernel = sync_round(gradient.shard.X)
        pairs = PAIRS.get(round_kernel[0])
        if comm.size == 1 and pairs is not kernels.csr_softmax_gradient_pairs:
            return None
        n_features = gradient.shard.n_features
        # [a slice's non-zeros at the rows' average, 1 where this rank cannot]: every rank must take
        # the same path.
        agreed = np.zeros(2, dtype=np.int64)
        largest_slice = 0
        if pairs is not None:
            largest_slice, nonzeros = typical_slice(gradient, sgd.bounds)
            agreed[0] = math.ceil(nonzeros)
        else:
            agreed[1] = 1
        comm.allreduce_max(agreed)
        typical, cannot = int(agreed[0]), bool(agreed[1])
        if cannot or comm.size * typical >= LAZY_BELOW * n_features:
            return None
        return cls(sgd, pairs, round_kernel, typical, largest_slice)

    def __init__(self, sgd: MiniBatchSGD, pairs, round_kernel: tuple, typical: int, largest_slice: int) -> None:
        self.sgd, self.pairs = sgd, pairs
        _, self.rows, self.model_arguments = round_kernel
        gradient = sgd.gradient
        # Values a column: one weight a class for softmax (its argument is the class count), else one.
        self.width = self.model_arguments[0] if pairs is kernels.csr_softmax_gradient_pairs else 1
        self._order, self._ends = None, np.zeros(1, dtype=np.int64)  # the epoch's order, order_ends of it
        # Int32: a position below the capacity, and half the bytes of the weights beside them.
        self.slot = np.full(gradient.shard.n_features, -1, dtype=np.int32)
        # The GLM's slopes of the slice's rows, or softmax's logits of a row.
        self.scratch = np.empty(self.width if self.width > 1 else largest_slice)
        self.steps_a_call = lazy_steps_a_call(gradient.comm.size * typical * self.width)
        self._message, self._gathered = np.zeros(0), np.zeros(0)  # grown to the largest step's

    def capacities(self, order: np.ndarray, first: int, length: int) -> np.ndarray:
        """The pairs a message of each of the steps ``first`` to ``first + length - 1`` has room for:
        the most non-zeros any rank's slice of the step holds (one long row costs its own step, not
        every step). Collective (one allreduce of ``length`` numbers)."""
        sgd = self.sgd
        if order is not self._order:  # a new epoch, or a run resumed mid-epoch
            self._order, self._ends = order, order_ends(sgd.gradient.shard.X.indptr, order)
        most = slice_nonzeros(self._ends, sgd.bounds[first:first + length + 1], sgd.gradient.shard.n_features)
        sgd.gradient.comm.allreduce_max(most)
        largest = message_size(self.width, int(most.max(initial=0)))
        if largest > self._message.size:
            self._message = np.zeros(largest)
            self._gathered = np.zeros(sgd.gradient.comm.size * largest)
        return most

    def run(self, params: np.ndarray, order: np.ndarray, first: int) -> int:
        """Steps from ``first`` on, up to the end of the call; returns the steps taken (see MiniBatchSGD)."""
        sgd, gradient, update = self.sgd, self.sgd.gradient, self.sgd.update
        comm, width = gradient.comm, self.width
        length = call_length(sgd, first, fixed_call(update.steps, self.steps_a_call))
        capacities = self.capacities(order, first, length).tolist()
        rates = scheduled_rates(update.schedule, update.steps, length)
        l2, half_l2, largest = gradient.l2, 0.5 * gradient.l2, gradient.largest
        start, comm_before = time.perf_counter(), comm.comm_seconds
        scale, norm = 1.0, kernels.sum_of_squares(params, params.size - width)
        y, hook, raised = gradient.shard.y, gradient.before_reduce, gradient.local_flag
        capacity = -1
        for h in range(length):
            step = first + h
            if capacities[h] != capacity:
                capacity = capacities[h]
                size = message_size(width, capacity)
                message, gathered = self._message[:size], self._gathered[:comm.size * size].reshape(comm.size, size)
            self.pairs(*self.rows, y, sgd.batch(order, step), params, scale, self.scratch, self.slot, message,
                       capacity, *self.model_arguments)
            if hook is not None:
                hook(message[LOSS:])
            message[FLAG] = raised()
            comm.allgather(message, gathered)
            status, scale, norm, objective, flags, culprit = kernels.apply_gathered_pairs(
                gathered, capacity, width, params, scale, norm, rates[h], l2, half_l2, sgd._batch_rows[step],
                largest, h == length - 1)
            gradient.reductions += 1
            if status != kernels.DONE:  # the weights are those before the step, as the dense path leaves them
                local = status == kernels.LOCAL_NONFINITE
                raise nonfinite_error(culprit if local else comm.rank, local)
            update.steps += 1
            gradient.flag_raised = gradient.flag_raised or flags != 0
            sgd._total += objective
        gradient.compute_seconds += time.perf_counter() - start - (comm.comm_seconds - comm_before)
        return length
