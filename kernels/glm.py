"""Fused loss-and-gradient kernels for generalised linear models: squared loss and log-loss.

Parameters live in one buffer ``params`` of length ``d + 1``: the weights, then the intercept.
The gradient buffer ``grad`` has the same layout. A kernel makes one pass over its rows and
returns the *sum* over its rows of the per-row loss; the gradient it writes is the summed
gradient. Averaging and regularisation happen after the sums are reduced across ranks.

Rows are taken four at a time: four dot products share each load of the weights, and the
gradient update adds four scaled rows per load and store of ``grad``, while the rows are still
in cache. Each row is read from memory once. ``loss`` selects the per-row loss (:data:`SQUARED`
or :data:`LOGISTIC`). Log-loss rows are also grouped in blocks of :data:`BLOCK_ROWS`, so that
their ``exp`` and ``log1p`` run as one vectorised loop (the kernel 2.1-2.6x faster than with libm:
benchmarks/RESULTS.md, *Log-loss in blocks*).

The gradient is summed into a private accumulator, allocated once per call outside the loop and
copied to ``grad`` at the end: the compiler cannot prove that ``grad`` does not alias ``X``,
and with its own array it keeps the update vectorised (measured: 15 -> 12 ms for 10^6 x 32
float32 rows).
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.jit import kernel
from mpigd.kernels.vecmath import exp_neg, log1p_unit

SQUARED = 0  # ½(z − y)²
LOGISTIC = 1  # log(1 + exp(z)) − y·z, labels 0 and 1
# Log-loss rows go a block at a time: their margins, then all their losses in one loop that
# vectorises (exp and log1p of kernels/vecmath.py), then their gradient while the rows are still in
# the L1 cache (32 rows of 32 float64 features: 8 KiB; 32 to 128 rows timed alike).
BLOCK_ROWS = 32


@kernel(inline="always")
def row_index(rows, t):
    """The ``t``-th row to visit: ``t`` itself, or ``rows[t]``."""
    return t if rows is None else rows[t]


@kernel
def _zero(out):
    for j in range(out.shape[0]):
        out[j] = 0


@kernel(inline="always")
def _point(z, label, loss):
    """The loss at margin ``z`` and its derivative with respect to ``z``."""
    if loss == SQUARED:
        residual = z - label
        return 0.5 * residual * residual, residual
    # One exp serves both the stable log-loss and the sigmoid: no overflow for any margin.
    e = exp_neg(abs(z))
    value = max(z, 0.0) - label * z + log1p_unit(e)
    inverse = 1.0 / (1.0 + e)
    probability = inverse if z >= 0 else e * inverse
    return value, probability - label


@kernel(inline="always")
def _four_margins(X, i0, i1, i2, i3, params):
    d = X.shape[1]
    z0 = z1 = z2 = z3 = params[d]
    for j in range(d):
        w = params[j]
        z0 += X[i0, j] * w
        z1 += X[i1, j] * w
        z2 += X[i2, j] * w
        z3 += X[i3, j] * w
    return z0, z1, z2, z3


@kernel(inline="always")
def _four_updates(X, i0, i1, i2, i3, r0, r1, r2, r3, grad):
    d = X.shape[1]
    for j in range(d):
        grad[j] += r0 * X[i0, j] + r1 * X[i1, j] + r2 * X[i2, j] + r3 * X[i3, j]
    grad[d] += r0 + r1 + r2 + r3


@kernel
def _four_rows(X, y, i0, i1, i2, i3, params, grad, loss):
    z0, z1, z2, z3 = _four_margins(X, i0, i1, i2, i3, params)
    l0, r0 = _point(z0, y[i0], loss)
    l1, r1 = _point(z1, y[i1], loss)
    l2, r2 = _point(z2, y[i2], loss)
    l3, r3 = _point(z3, y[i3], loss)
    _four_updates(X, i0, i1, i2, i3, r0, r1, r2, r3, grad)
    return l0 + l1 + l2 + l3


@kernel
def _margin(X, i, params):
    d = X.shape[1]
    z = params[d]
    for j in range(d):
        z += X[i, j] * params[j]
    return z


@kernel
def _one_update(X, i, r, grad):
    d = X.shape[1]
    for j in range(d):
        grad[j] += r * X[i, j]
    grad[d] += r


@kernel
def _one_row(X, y, i, params, grad, loss):
    value, r = _point(_margin(X, i, params), y[i], loss)
    _one_update(X, i, r, grad)
    return value


@kernel
def _squared_rows(X, y, rows, params, grad):
    n = X.shape[0] if rows is None else rows.shape[0]
    tail = n - n % 4
    total = 0.0
    for t in range(0, tail, 4):
        total += _four_rows(X, y, row_index(rows, t), row_index(rows, t + 1), row_index(rows, t + 2),
                            row_index(rows, t + 3), params, grad, SQUARED)
    for t in range(tail, n):
        total += _one_row(X, y, row_index(rows, t), params, grad, SQUARED)
    return total


@kernel
def _logistic_rows(X, y, rows, params, grad, z, r):
    """``z`` and ``r``: scratch for a block's margins and slopes, :data:`BLOCK_ROWS` float64 each."""
    n = X.shape[0] if rows is None else rows.shape[0]
    total = 0.0
    for start in range(0, n, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n - start)
        tail = m - m % 4
        for t in range(0, tail, 4):
            z[t], z[t + 1], z[t + 2], z[t + 3] = _four_margins(
                X, row_index(rows, start + t), row_index(rows, start + t + 1), row_index(rows, start + t + 2),
                row_index(rows, start + t + 3), params)
        for t in range(tail, m):
            z[t] = _margin(X, row_index(rows, start + t), params)
        for t in range(m):
            value, r[t] = _point(z[t], y[row_index(rows, start + t)], LOGISTIC)
            total += value
        for t in range(0, tail, 4):
            _four_updates(X, row_index(rows, start + t), row_index(rows, start + t + 1),
                          row_index(rows, start + t + 2), row_index(rows, start + t + 3),
                          r[t], r[t + 1], r[t + 2], r[t + 3], grad)
        for t in range(tail, m):
            _one_update(X, row_index(rows, start + t), r[t], grad)
    return total


@kernel
def glm_loss_grad(X, y, params, grad, loss):
    """Summed loss over every row of ``X``; the summed gradient is written to ``grad``."""
    return glm_loss_grad_rows(X, y, None, params, grad, loss)


@kernel
def glm_loss_grad_rows(X, y, rows, params, grad, loss):
    """As :func:`glm_loss_grad`, over the rows whose indices are listed in ``rows`` (``None``: all)."""
    return glm_loss_grad_rows_into(X, y, rows, params, grad, loss, np.empty_like(grad), np.empty(2 * BLOCK_ROWS))


@kernel(inline="always")
def glm_loss_grad_rows_into(X, y, rows, params, grad, loss, acc, blocks):
    """As :func:`glm_loss_grad_rows`, with the caller's scratch: ``acc`` shaped as ``grad`` (not
    ``grad`` itself) and ``blocks``, ``2 * BLOCK_ROWS`` float64. For a caller that takes many steps
    in one call and should not allocate in its loop. Inlined: it has no arithmetic of its own, so
    the caller's fastmath flags cannot change its bits."""
    acc[:] = 0
    if loss == LOGISTIC:
        total = _logistic_rows(X, y, rows, params, acc, blocks[:BLOCK_ROWS], blocks[BLOCK_ROWS:])
    else:
        total = _squared_rows(X, y, rows, params, acc)
    grad[:] = acc
    return total


@kernel
def squared_eval(X, y, params, stats):
    """Sums for regression metrics: ``stats`` = [loss, squared error, Σy, Σy²] over the rows."""
    _zero(stats)
    for i in range(X.shape[0]):
        residual = _margin(X, i, params) - y[i]
        stats[1] += residual * residual
        stats[2] += y[i]
        stats[3] += y[i] * y[i]
    stats[0] = 0.5 * stats[1]


@kernel
def logistic_eval(X, y, params, stats):
    """Sums for classification metrics: ``stats`` = [log-loss, correct predictions] over the rows."""
    _zero(stats)
    for i in range(X.shape[0]):
        z = _margin(X, i, params)
        stats[0] += _point(z, y[i], LOGISTIC)[0]
        stats[1] += 1.0 if (z > 0) == (y[i] > 0.5) else 0.0
