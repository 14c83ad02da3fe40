"""Synchronous plain SGD on wide CSR rows: each step gathers the non-zero part of every rank's
gradient instead of summing every weight's (:mod:`mpigd.kernels.sparse_exchange`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from mpigd import kernels
from mpigd.algorithms.chunked import LAZY_BELOW, call_length, fixed_call, lazy_steps_a_call, scheduled_rates
from mpigd.guards import nonfinite_error
from mpigd.kernels.sparse_exchange import FLAG, LOSS, message_size
from mpigd.optim import SGD

if TYPE_CHECKING:
    from mpigd.algorithms.sgd import MiniBatchSGD


def pair_capacity(indptr: np.ndarray, n_features: int, largest_slice: int) -> int:
    """The most distinct columns a slice of ``largest_slice`` of these CSR rows can hold: the non-zeros
    of its longest rows, and no more than the features."""
    lengths = np.diff(indptr)
    if largest_slice <= 0:
        return 0
    if largest_slice < lengths.size:
        lengths = np.partition(lengths, lengths.size - largest_slice)[lengths.size - largest_slice:]
    return int(min(n_features, int(lengths.sum())))


# The round kernel a model's CSR rows take on one rank -> the kernel that writes its pairs.
PAIRS = {kernels.csr_glm_sync_steps: kernels.csr_glm_gradient_pairs,
         kernels.csr_softmax_sync_steps: kernels.csr_softmax_gradient_pairs}


class SparseExchange:
    """Synchronous plain SGD's steps where the rows are CSR rows of a linear, logistic or softmax
    model, without L1 and clipping, and the ranks' pairs together are fewer than
    :data:`~mpigd.algorithms.chunked.LAZY_BELOW` of the features: on several ranks, and for
    softmax on one rank too (a GLM's steps there are :class:`~mpigd.algorithms.chunked.ChunkedSteps`'
    lazy kernel calls, without a message between steps).

    Each step: this rank's slice's gradient as (column, values) pairs
    (:func:`~mpigd.kernels.csr_glm_gradient_pairs`, :func:`~mpigd.kernels.csr_softmax_gradient_pairs`),
    one allgather of every rank's message (a fixed ``capacity`` of pairs, the most any rank's slice
    can hold, agreed when built), and the same update on every rank from the gathered pairs
    (:func:`~mpigd.kernels.apply_gathered_pairs`) with the weights as a scale times a vector: a
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
        # [capacity, 1 where this rank cannot]: every rank must take the same path.
        agreed = np.zeros(2, dtype=np.int64)
        if pairs is not None:
            agreed[0] = pair_capacity(gradient.shard.X.indptr, n_features, int(np.diff(sgd.bounds).max(initial=0)))
        else:
            agreed[1] = 1
        comm.allreduce_max(agreed)
        capacity, cannot = int(agreed[0]), bool(agreed[1])
        if cannot or comm.size * capacity >= LAZY_BELOW * n_features:
            return None
        return cls(sgd, pairs, round_kernel, capacity)

    def __init__(self, sgd: MiniBatchSGD, pairs, round_kernel: tuple, capacity: int) -> None:
        self.sgd, self.pairs, self.capacity = sgd, pairs, capacity
        _, self.rows, self.model_arguments = round_kernel
        gradient = sgd.gradient
        # Values a column: one weight a class for softmax (its argument is the class count), else one.
        self.width = self.model_arguments[0] if pairs is kernels.csr_softmax_gradient_pairs else 1
        self.message = np.zeros(message_size(self.width, capacity))
        self.gathered = np.zeros((gradient.comm.size, self.message.size))
        # Int32: a position below the capacity, and half the bytes of the weights beside them.
        self.slot = np.full(gradient.shard.n_features, -1, dtype=np.int32)
        # The GLM's slopes of the slice's rows, or softmax's logits of a row.
        self.scratch = np.empty(self.width if self.width > 1 else int(np.diff(sgd.bounds).max(initial=0)))
        self.steps_a_call = lazy_steps_a_call(gradient.comm.size * capacity * self.width)

    def run(self, params: np.ndarray, order: np.ndarray, first: int) -> int:
        """Steps from ``first`` on, up to the end of the call; returns the steps taken (see MiniBatchSGD)."""
        sgd, gradient, update = self.sgd, self.sgd.gradient, self.sgd.update
        comm, message, gathered, width = gradient.comm, self.message, self.gathered, self.width
        length = call_length(sgd, first, fixed_call(update.steps, self.steps_a_call))
        rates = scheduled_rates(update.schedule, update.steps, length)
        l2, half_l2, largest = gradient.l2, 0.5 * gradient.l2, gradient.largest
        start, comm_before = time.perf_counter(), comm.comm_seconds
        scale, norm = 1.0, kernels.sum_of_squares(params, params.size - width)
        y, hook, raised = gradient.shard.y, gradient.before_reduce, gradient.local_flag
        for h in range(length):
            step = first + h
            self.pairs(*self.rows, y, sgd.batch(order, step), params, scale, self.scratch, self.slot, message,
                       self.capacity, *self.model_arguments)
            if hook is not None:
                hook(message[LOSS:])
            message[FLAG] = raised()
            comm.allgather(message, gathered)
            status, scale, norm, objective, flags, culprit = kernels.apply_gathered_pairs(
                gathered, self.capacity, width, params, scale, norm, rates[h], l2, half_l2, sgd._batch_rows[step],
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
