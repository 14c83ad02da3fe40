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

:func:`csr_glm_lazy_local_steps` takes a local SGD round's steps the same way, on the rank's copy
of the parameters (see :mod:`mpigd.algorithms.local_sgd`).
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.finish import sum_of_squares
from mpigd.kernels.glm import _point
from mpigd.kernels.jit import kernel
from mpigd.kernels.sparse import _span
from mpigd.kernels.sync_round import DONE, LOCAL_NONFINITE, NONFINITE

RESCALE_BELOW = 1e-9


@kernel(inline="always")
def _rescale(params, d, scale):
    for j in range(d):
        params[j] = params[j] * scale


@kernel(inline="always")
def _losses(indptr, indices, data, y, rows, params, scale, intercept, slopes, loss):
    """The summed loss of ``rows`` at ``w = scale·v`` and ``intercept``; each row's slope to ``slopes``."""
    summed = 0.0
    for t in range(rows.shape[0]):
        lo, hi = _span(indptr, rows[t])
        z = 0.0
        for p in range(lo, hi):
            z += data[p] * params[np.uint64(indices[p])]
        value, slope = _point(scale * z + intercept, y[rows[t]], loss)
        slopes[t] = slope
        summed += value
    return summed


@kernel(inline="always")
def _pull(indptr, indices, data, rows, params, slopes, move, scale, norm, largest):
    """``w −= move · Σ_t slopes[t]·x_t`` over the rows' columns, as ``v −= ... / scale``, keeping
    ``norm = ‖v‖²``; returns ``(scale, norm, Σ_t slopes[t])`` (scale and norm change where ``v``
    would overflow and the scale is folded in first)."""
    d = params.shape[0] - 1
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
    return scale, norm, pulled


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
        intercept = np.float64(params[d])
        summed = _losses(indptr, indices, data, y, rows, params, scale, intercept, slopes, loss)
        # No penalty without L2, as mean_with_l2 (0 times an overflowed ‖v‖² is NaN).
        objective = summed / batch_rows[step] + (half_l2 * (scale * scale * norm) if half_l2 != 0 else 0.0)
        if not abs(summed) <= largest or not np.isfinite(objective):
            _rescale(params, d, scale)
            # A finite loss with a penalty that overflows is the step-by-step path's NONFINITE.
            return h, total, LOCAL_NONFINITE if not abs(summed) <= largest else NONFINITE
        rate = np.float64(rates[h])
        scale *= 1.0 - rate * l2
        move = rate / batch_rows[step]
        scale, norm, pulled = _pull(indptr, indices, data, rows, params, slopes, move, scale, norm, largest)
        params[d] = intercept - move * pulled
        if scale < RESCALE_BELOW:
            _rescale(params, d, scale)
            scale, norm = 1.0, sum_of_squares(params, d)
        total += objective
    _rescale(params, d, scale)
    return length, total, DONE


@kernel
def csr_glm_lazy_local_steps(indptr, indices, data, y, order, bounds, batch_rows, first, length, params, copy,
                             buffer, size, l2, lr, largest, slopes, loss):
    """A whole local SGD round, steps 0 to ``length - 1`` (the arguments as
    :func:`~mpigd.kernels.local_round.csr_glm_local_steps`', ``slopes`` as above), with the
    rank's copy ``u`` of the parameters kept as ``scale·v``.

    Step 0 is taken at ``w = params``, as the round's step 0 is; the last step moves the copy too,
    to ``u^H``. ``buffer`` is then what the exact round leaves there after its L2 correction:
    ``buffer[:-1] = (B_0/P)·((w − u^H)/lr − H·l2·w)`` (no L2 term for the intercept), from which
    the same reduction and update give the average of the ranks' copies, and ``buffer[-1]`` the
    steps' summed losses, step ``h``'s scaled by ``B_0/B_h``. ``copy`` is scratch; ``lr`` must not
    be 0. The same steps as the exact round to rounding, not bit for bit, without its passes over
    every weight at step 0 (the gradient's zeroing, the first move)."""
    d = params.shape[0] - 1
    first_rows = batch_rows[first]
    for j in range(d + 1):
        copy[j] = params[j]
    scale = 1.0
    norm = 0.0  # _pull keeps it; a local round reports no penalty
    summed = 0.0
    for h in range(length):
        step = first + h
        rows = order[bounds[step]:bounds[step + 1]]
        intercept = np.float64(copy[d])
        value = _losses(indptr, indices, data, y, rows, copy, scale, intercept, slopes, loss)
        if not abs(value) <= largest:
            value = np.inf
        summed += (first_rows / batch_rows[step]) * value
        scale *= 1.0 - lr * l2
        move = lr * size / batch_rows[step]
        scale, norm, pulled = _pull(indptr, indices, data, rows, copy, slopes, move, scale, norm, largest)
        copy[d] = intercept - move * pulled
        if scale < RESCALE_BELOW:
            _rescale(copy, d, scale)
            scale = 1.0
    # One pass, the copy's scale folded in on the way and no division (it took as long as the rest).
    share = first_rows / size
    per_rate, decay = share / lr, share * length * l2
    for j in range(d):
        w = np.float64(params[j])
        buffer[j] = (w - scale * copy[j]) * per_rate - decay * w
    buffer[d] = (params[d] - copy[d]) * per_rate
    buffer[d + 1] = summed
