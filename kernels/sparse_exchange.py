"""Synchronous plain SGD on wide CSR rows across ranks: each rank's part of a step's gradient as
(column, values) pairs, and the update from every rank's pairs.

On several ranks a step of synchronous SGD summed the gradient of every weight across ranks,
though a batch of CSR rows touches a few of them: on 10^5 features that is an allreduce of 10^5
numbers and passes over them, for a step whose rows hold a hundred non-zeros. Instead each rank
writes the non-zero part of its slice's gradient as pairs (:func:`csr_glm_gradient_pairs`,
:func:`csr_softmax_gradient_pairs`), the ranks gather every rank's pairs (one allgather, in
``mpigd.comm``), and every rank applies them all, rank by rank, to its weights kept as a scale
times a vector, ``w = scale·v``, as :mod:`mpigd.kernels.lazy_sgd` keeps them on one rank
(:func:`apply_gathered_pairs`). Every rank runs the same arithmetic on the same gathered numbers
in the same order: the same bits on every rank. The same steps as the dense path to rounding, not
bit for bit (a column's contributions are summed on each rank first, then rank by rank, and the
decay lands on the scale).

A model has ``k`` weights a feature (a GLM 1, softmax regression one a class, stored feature by
feature) and ``k`` intercepts after them. A rank's message is a float64 row of
``HEADER + k + capacity·(1 + k)`` numbers: ``[count, summed loss, flag, 0]``, the intercepts'
gradient (``k``), then ``capacity`` columns (integers, exact in float64 below 2^53) of which the
first ``count`` are used, then their ``k`` values each.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.finish import sum_of_squares
from mpigd.kernels.jit import kernel
from mpigd.kernels.lazy_sgd import RESCALE_BELOW, _losses, _rescale
from mpigd.kernels.softmax import softmax_delta
from mpigd.kernels.sparse import _span
from mpigd.kernels.sync_round import DONE, LOCAL_NONFINITE, NONFINITE

HEADER = 4
COUNT, LOSS, FLAG = 0, 1, 2


def message_size(k: int, capacity: int) -> int:
    """Numbers in a message of ``capacity`` pairs of ``k`` values (see the module)."""
    return HEADER + k + capacity * (1 + k)


@kernel(inline="always")
def _slot_of(j, slot, message, count, k, capacity):
    """Where column ``j``'s values are in ``message``: its position, a new one (its values zeroed)
    if ``j`` has none yet; returns ``(position, count)``."""
    position = slot[j]
    if position < 0:
        position = count
        slot[j] = position
        message[HEADER + k + position] = np.float64(j)
        values = HEADER + k + capacity + position * k
        for c in range(k):
            message[values + c] = 0.0
        count += 1
    return position, count


@kernel(inline="always")
def _close_message(slot, message, count, summed, k):
    """Give the slots back (-1) and write the header."""
    for position in range(count):
        slot[np.uint64(message[HEADER + k + position])] = -1
    message[COUNT] = count
    message[LOSS] = summed


@kernel
def csr_glm_gradient_pairs(indptr, indices, data, y, rows, params, scale, slopes, slot, message, capacity, loss):
    """This rank's part of a step's gradient at ``w = scale·v`` (``params`` holds ``v`` and the
    intercept) over the local ``rows``, into ``message`` (see the module, ``k = 1``; the flag is
    left as it is): each column once, its contributions summed in the rows' order. ``slopes`` is
    float64 scratch of at least the rows' count; ``slot`` is int32 scratch of one entry a feature,
    all -1 on entry and again on return. ``capacity`` must be at least the distinct columns of the
    rows."""
    d = params.shape[0] - 1
    intercept = np.float64(params[d])
    summed = _losses(indptr, indices, data, y, rows, params, scale, intercept, slopes, loss)
    values = HEADER + 1 + capacity
    count = 0
    pulled = 0.0
    for t in range(rows.shape[0]):
        lo, hi = _span(indptr, rows[t])
        slope = slopes[t]
        for p in range(lo, hi):
            position, count = _slot_of(np.uint64(indices[p]), slot, message, count, 1, capacity)
            message[values + position] += slope * data[p]
        pulled += slope
    message[HEADER] = pulled
    _close_message(slot, message, count, summed, 1)


@kernel
def csr_softmax_gradient_pairs(indptr, indices, data, y, rows, params, scale, z, slot, message, capacity, k):
    """As :func:`csr_glm_gradient_pairs` for softmax regression's ``k`` classes (``params``: ``v``
    as ``d x k``, then the ``k`` intercepts); ``z`` is float64 scratch of ``k`` entries."""
    n_weights = params.shape[0] - k
    values = HEADER + k + capacity
    for c in range(k):
        message[HEADER + c] = 0.0
    count = 0
    summed = 0.0
    for t in range(rows.shape[0]):
        row = rows[t]
        lo, hi = _span(indptr, row)
        for c in range(k):
            z[c] = 0.0
        for p in range(lo, hi):
            x = data[p]
            at = np.uint64(indices[p]) * np.uint64(k)
            for c in range(k):
                z[c] += x * params[at + np.uint64(c)]
        for c in range(k):
            z[c] = scale * z[c] + params[n_weights + c]
        summed += softmax_delta(z, int(y[row]))  # z is now softmax(z) − onehot(label)
        for p in range(lo, hi):
            position, count = _slot_of(np.uint64(indices[p]), slot, message, count, k, capacity)
            x = data[p]
            at = values + position * k
            for c in range(k):
                message[at + c] += x * z[c]
        for c in range(k):
            message[HEADER + c] += z[c]
    _close_message(slot, message, count, summed, k)


@kernel
def apply_gathered_pairs(gathered, capacity, k, params, scale, norm, rate, l2, half_l2, batch_rows, largest, fold):
    """One step of plain SGD, ``w ← (1 − rate·l2)·w − (rate/batch_rows)·g`` (the intercepts without
    the decay), from every rank's message (the rows of ``gathered``, ``k`` values a pair), with
    ``w = scale·v`` (``params`` holds ``v`` and the ``k`` intercepts) and ``norm = ‖v‖²``. Returns
    ``(status, scale, norm, objective, flags, culprit)``: the step's objective (mean loss plus
    ``half_l2·‖w‖²``, at the weights before the step), the sum of the messages' flags, and, with
    status ``LOCAL_NONFINITE``, the first rank whose loss was not finite (``NONFINITE``: every
    rank's was, their sum, the intercepts' gradient or the objective was not; the weights are then
    untouched but for the scale, folded in). Where the decay would take the scale to or below
    :data:`~mpigd.kernels.lazy_sgd.RESCALE_BELOW` (a rate times l2 of 1 or more too), it is folded
    into ``params`` first; with ``fold``, after the step too (``params`` then holds ``w``)."""
    n_weights = params.shape[0] - k
    ranks = gathered.shape[0]
    values = HEADER + k + capacity
    summed = flags = 0.0
    for r in range(ranks):
        flags += gathered[r, FLAG]
    for r in range(ranks):
        if not abs(gathered[r, LOSS]) <= largest:
            _rescale(params, n_weights, scale)
            return LOCAL_NONFINITE, 1.0, norm, 0.0, flags, r
        summed += gathered[r, LOSS]
    # No penalty without L2, as mean_with_l2 (0 times an overflowed ‖v‖² is NaN).
    objective = summed / batch_rows + (half_l2 * (scale * scale * norm) if half_l2 != 0 else 0.0)
    bad = not np.isfinite(objective)
    for c in range(k):
        pulled = 0.0
        for r in range(ranks):
            pulled += gathered[r, HEADER + c]
        bad = bad or not abs(pulled) <= largest
    if bad:
        _rescale(params, n_weights, scale)
        return NONFINITE, 1.0, norm, 0.0, flags, -1
    scale *= 1.0 - rate * l2
    if not scale >= RESCALE_BELOW:
        _rescale(params, n_weights, scale)
        scale, norm = 1.0, sum_of_squares(params, n_weights)
    move = rate / batch_rows
    coefficient = move / scale
    for r in range(ranks):
        for position in range(int(gathered[r, COUNT])):
            at = np.uint64(gathered[r, HEADER + k + position]) * np.uint64(k)
            pair = values + position * k
            for c in range(k):
                g = gathered[r, pair + c]
                j = at + np.uint64(c)
                old = np.float64(params[j])
                value = old - coefficient * g
                if not abs(value) <= largest and scale != 1.0:
                    # v = w / scale would overflow the dtype where w does not: fold the scale in first.
                    _rescale(params, n_weights, scale)
                    scale, norm, coefficient = 1.0, sum_of_squares(params, n_weights), move
                    old = np.float64(params[j])
                    value = old - coefficient * g
                params[j] = value
                new = np.float64(params[j])
                norm += new * new - old * old
    for c in range(k):
        pulled = 0.0
        for r in range(ranks):
            pulled += gathered[r, HEADER + c]
        params[n_weights + c] = np.float64(params[n_weights + c]) - move * pulled
    if fold:  # the norm is the caller's to take again at its next call
        _rescale(params, n_weights, scale)
        scale = 1.0
    return DONE, scale, norm, objective, flags, -1
