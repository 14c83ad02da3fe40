"""Plain SGD on sparse rows in time proportional to the non-zeros a step touches, not the features.

A step of plain SGD with an L2 term moves every weight, ``w ← (1 − lr·l2)·w − (lr/B)·g``, though
the gradient ``g`` of a batch of CSR rows is zero outside the rows' columns: on 10^5 features and
50 non-zeros a row, the passes over all the weights made one-row steps take 280-430x
scikit-learn's time. As scikit-learn's SGD does, :func:`csr_glm_lazy_sgd_steps` keeps the weights as a
scale times a vector, ``w = scale·v``: the L2 decay multiplies ``scale``, and only the weights in
the batch's columns are written, ``v_j −= (lr/B)·g_j / scale``. ``‖v‖²`` is kept up to date at
each write, for the step's objective. The weights are ``scale·v`` again (one pass) when the call
returns, and whenever ``scale`` falls below :data:`RESCALE_BELOW`.

The result is the step-by-step path's to rounding, not bit for bit: the same steps, with the
decay and the gradient applied in another order. ``rates`` holds each step's learning rate;
``1 − rate·l2`` must be positive (the caller takes the exact path otherwise). ``slopes`` is scratch
of the largest batch's rows, float64. Returns ``(steps taken, total, status)`` as the kernels of
:mod:`mpigd.kernels.sync_round` do, ``total`` continued with each step's objective (mean loss plus
``half_l2·‖w‖²``, at the weights the step's gradient is taken at).
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.finish import sum_of_squares
from mpigd.kernels.glm import _point
from mpigd.kernels.jit import kernel
from mpigd.kernels.sparse import _span
from mpigd.kernels.sync_round import DONE, LOCAL_NONFINITE

RESCALE_BELOW = 1e-9


@kernel(inline="always")
def _rescale(params, d, scale):
    for j in range(d):
        params[j] = params[j] * scale


@kernel
def csr_glm_lazy_sgd_steps(indptr, indices, data, y, order, bounds, batch_rows, first, length, params, rates, l2,
                           half_l2, largest, total, slopes, loss):
    """Steps ``first`` to ``first + length - 1`` of plain SGD for the GLM ``loss`` on CSR rows (see
    the module; the arguments as :func:`~mpigd.kernels.sync_round.csr_glm_sync_steps`')."""
    d = params.shape[0] - 1
    scale = 1.0
    norm = sum_of_squares(params, d)  # ‖v‖²
    for h in range(length):
        step = first + h
        rows = order[bounds[step]:bounds[step + 1]]
        summed = 0.0
        intercept = np.float64(params[d])
        for t in range(rows.shape[0]):
            lo, hi = _span(indptr, rows[t])
            z = 0.0
            for p in range(lo, hi):
                z += data[p] * params[np.uint64(indices[p])]
            value, slope = _point(scale * z + intercept, y[rows[t]], loss)
            slopes[t] = slope
            summed += value
        # No penalty without L2, as mean_with_l2 (0 times an overflowed ‖v‖² is NaN).
        objective = summed / batch_rows[step] + (half_l2 * (scale * scale * norm) if half_l2 != 0 else 0.0)
        if not abs(summed) <= largest or not np.isfinite(objective):
            _rescale(params, d, scale)
            return h, total, LOCAL_NONFINITE
        rate = np.float64(rates[h])
        scale *= 1.0 - rate * l2
        move = rate / batch_rows[step]
        pulled = 0.0
        for t in range(rows.shape[0]):
            lo, hi = _span(indptr, rows[t])
            coefficient = move * slopes[t] / scale
            for p in range(lo, hi):
                j = np.uint64(indices[p])
                old = np.float64(params[j])
                value = old - coefficient * data[p]
                if not abs(value) <= largest and scale != 1.0:
                    # v = w / scale would overflow the dtype where w does not: fold the scale in first.
                    _rescale(params, d, scale)
                    scale, norm = 1.0, sum_of_squares(params, d)
                    coefficient = move * slopes[t]
                    old = np.float64(params[j])
                    value = old - coefficient * data[p]
                params[j] = value
                new = np.float64(params[j])
                norm += new * new - old * old
            pulled += slopes[t]
        params[d] = intercept - move * pulled
        if scale < RESCALE_BELOW:
            _rescale(params, d, scale)
            scale, norm = 1.0, sum_of_squares(params, d)
        total += objective
    _rescale(params, d, scale)
    return length, total, DONE
