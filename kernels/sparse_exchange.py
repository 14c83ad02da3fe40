"""Synchronous plain SGD on wide CSR rows across ranks: each rank's part of a step's gradient as
(column, value) pairs, and the update from every rank's pairs.

On several ranks a step of synchronous SGD summed the gradient of every weight across ranks,
though a batch of CSR rows touches a few of them: on 10^5 features that is an allreduce of 10^5
numbers and passes over them, for a step whose rows hold a hundred non-zeros. Instead each rank
writes the non-zero part of its slice's gradient as pairs (:func:`csr_glm_gradient_pairs`), the
ranks gather every rank's pairs (one allgather, in ``mpigd.comm``), and every rank applies them
all, rank by rank, to its weights kept as a scale times a vector, ``w = scale·v``, as
:mod:`mpigd.kernels.lazy_sgd` keeps them on one rank (:func:`apply_gathered_pairs`). Every rank
runs the same arithmetic on the same gathered numbers in the same order: the same bits on every
rank. The same steps as the dense path to rounding, not bit for bit (a column's contributions are
summed on each rank first, then rank by rank, and the decay lands on the scale).

A rank's message is a float64 row of ``HEADER + 2·capacity`` numbers: ``[count, summed loss,
the intercept's gradient (Σ slopes), flag]``, then ``capacity`` columns (integers, exact in
float64 below 2^53) of which the first ``count`` are used, then their ``capacity`` values.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.finish import sum_of_squares
from mpigd.kernels.jit import kernel
from mpigd.kernels.lazy_sgd import RESCALE_BELOW, _losses, _rescale
from mpigd.kernels.sparse import _span
from mpigd.kernels.sync_round import DONE, LOCAL_NONFINITE, NONFINITE

HEADER = 4
COUNT, LOSS, INTERCEPT, FLAG = 0, 1, 2, 3


@kernel
def csr_glm_gradient_pairs(indptr, indices, data, y, rows, params, scale, slopes, slot, message, capacity, loss):
    """This rank's part of a step's gradient at ``w = scale·v`` (``params`` holds ``v`` and the
    intercept) over the local ``rows``, into ``message`` (see the module; the flag is left as it
    is): each column once, its contributions summed in the rows' order. ``slopes`` is float64
    scratch of at least the rows' count; ``slot`` is int32 scratch of one entry a feature, all -1
    on entry and again on return. ``capacity`` must be at least the distinct columns of the rows."""
    d = params.shape[0] - 1
    intercept = np.float64(params[d])
    summed = _losses(indptr, indices, data, y, rows, params, scale, intercept, slopes, loss)
    values = HEADER + capacity
    count = 0
    pulled = 0.0
    for t in range(rows.shape[0]):
        lo, hi = _span(indptr, rows[t])
        slope = slopes[t]
        for p in range(lo, hi):
            j = np.uint64(indices[p])
            position = slot[j]
            if position < 0:
                position = count
                slot[j] = position
                message[HEADER + position] = np.float64(j)
                message[values + position] = 0.0
                count += 1
            message[values + position] += slope * data[p]
        pulled += slope
    for k in range(count):
        slot[np.uint64(message[HEADER + k])] = -1
    message[COUNT] = count
    message[LOSS] = summed
    message[INTERCEPT] = pulled


@kernel
def apply_gathered_pairs(gathered, capacity, params, scale, norm, rate, l2, half_l2, batch_rows, largest, fold):
    """One step of plain SGD, ``w ← (1 − rate·l2)·w − (rate/batch_rows)·g``, from every rank's
    message (the rows of ``gathered``), with ``w = scale·v`` (``params`` holds ``v`` and the
    intercept) and ``norm = ‖v‖²``. Returns ``(status, scale, norm, objective, flags, culprit)``:
    the step's objective (mean loss plus ``half_l2·‖w‖²``, at the weights before the step), the
    sum of the messages' flags, and, with status ``LOCAL_NONFINITE``, the first rank whose loss was
    not finite (``NONFINITE``: every rank's was, their sum or the objective was not; the weights are
    then untouched but for the scale, folded in). Where the decay would take the scale to or below
    :data:`~mpigd.kernels.lazy_sgd.RESCALE_BELOW` (a rate times l2 of 1 or more too), it is folded
    into ``params`` first; with ``fold``, after the step too (``params`` then holds ``w``)."""
    d = params.shape[0] - 1
    ranks = gathered.shape[0]
    values = HEADER + capacity
    summed = pulled = flags = 0.0
    for r in range(ranks):
        flags += gathered[r, FLAG]
    for r in range(ranks):
        if not abs(gathered[r, LOSS]) <= largest:
            _rescale(params, d, scale)
            return LOCAL_NONFINITE, 1.0, norm, 0.0, flags, r
        summed += gathered[r, LOSS]
        pulled += gathered[r, INTERCEPT]
    # No penalty without L2, as mean_with_l2 (0 times an overflowed ‖v‖² is NaN).
    objective = summed / batch_rows + (half_l2 * (scale * scale * norm) if half_l2 != 0 else 0.0)
    if not np.isfinite(objective) or not abs(pulled) <= largest:
        _rescale(params, d, scale)
        return NONFINITE, 1.0, norm, 0.0, flags, -1
    scale *= 1.0 - rate * l2
    if not scale >= RESCALE_BELOW:
        _rescale(params, d, scale)
        scale, norm = 1.0, sum_of_squares(params, d)
    move = rate / batch_rows
    coefficient = move / scale
    for r in range(ranks):
        for k in range(int(gathered[r, COUNT])):
            j = np.uint64(gathered[r, HEADER + k])
            g = gathered[r, values + k]
            old = np.float64(params[j])
            value = old - coefficient * g
            if not abs(value) <= largest and scale != 1.0:
                # v = w / scale would overflow the dtype where w does not: fold the scale in first.
                _rescale(params, d, scale)
                scale, norm, coefficient = 1.0, sum_of_squares(params, d), move
                old = np.float64(params[j])
                value = old - coefficient * g
            params[j] = value
            new = np.float64(params[j])
            norm += new * new - old * old
    params[d] = np.float64(params[d]) - move * pulled
    if fold:  # the norm is the caller's to take again at its next call
        _rescale(params, d, scale)
        scale = 1.0
    return DONE, scale, norm, objective, flags, -1
