"""Fused loss-and-gradient kernels for generalised linear models: squared loss and log-loss.

Parameters live in one buffer ``params`` of length ``d + 1``: the weights, then the intercept.
The gradient buffer ``grad`` has the same layout. A kernel makes one pass over its rows and
returns the *sum* over its rows of the per-row loss; the gradient it writes is the summed
gradient. Averaging and regularisation happen after the sums are reduced across ranks.

Rows are taken four at a time: four dot products share each load of the weights, and the
gradient update adds four scaled rows per load and store of ``grad``, while the rows are still
in cache. Each row is read from memory once. ``loss`` selects the per-row loss (:data:`SQUARED`
or :data:`LOGISTIC`); the branch is per row and costs nothing next to the row's arithmetic.

The gradient is summed into a private accumulator, allocated once per call outside the loop and
copied to ``grad`` at the end: the compiler cannot prove that ``grad`` does not alias ``X``,
and with its own array it keeps the update vectorised (measured: 15 -> 12 ms for 10^6 x 32
float32 rows).
"""

from __future__ import annotations

import math

import numpy as np

from mpigd.kernels.jit import kernel

SQUARED = 0  # ½(z − y)²
LOGISTIC = 1  # log(1 + exp(z)) − y·z, labels 0 and 1


@kernel
def _zero(out):
    for j in range(out.shape[0]):
        out[j] = 0


@kernel
def _point(z, label, loss):
    """The loss at margin ``z`` and its derivative with respect to ``z``."""
    if loss == SQUARED:
        residual = z - label
        return 0.5 * residual * residual, residual
    # One exp serves both the stable log-loss and the sigmoid: no overflow for any margin.
    e = math.exp(-abs(z))
    value = max(z, 0.0) - label * z + math.log1p(e)
    probability = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    return value, probability - label


@kernel
def _four_rows(X, y, i0, i1, i2, i3, params, grad, loss):
    d = X.shape[1]
    z0 = z1 = z2 = z3 = params[d]
    for j in range(d):
        w = params[j]
        z0 += X[i0, j] * w
        z1 += X[i1, j] * w
        z2 += X[i2, j] * w
        z3 += X[i3, j] * w
    l0, r0 = _point(z0, y[i0], loss)
    l1, r1 = _point(z1, y[i1], loss)
    l2, r2 = _point(z2, y[i2], loss)
    l3, r3 = _point(z3, y[i3], loss)
    for j in range(d):
        grad[j] += r0 * X[i0, j] + r1 * X[i1, j] + r2 * X[i2, j] + r3 * X[i3, j]
    grad[d] += r0 + r1 + r2 + r3
    return l0 + l1 + l2 + l3


@kernel
def _margin(X, i, params):
    d = X.shape[1]
    z = params[d]
    for j in range(d):
        z += X[i, j] * params[j]
    return z


@kernel
def _one_row(X, y, i, params, grad, loss):
    value, r = _point(_margin(X, i, params), y[i], loss)
    d = X.shape[1]
    for j in range(d):
        grad[j] += r * X[i, j]
    grad[d] += r
    return value


@kernel
def glm_loss_grad(X, y, params, grad, loss):
    """Summed loss over every row of ``X``; the summed gradient is written to ``grad``."""
    acc = np.zeros_like(grad)
    n = X.shape[0]
    tail = n - n % 4
    total = 0.0
    for i in range(0, tail, 4):
        total += _four_rows(X, y, i, i + 1, i + 2, i + 3, params, acc, loss)
    for i in range(tail, n):
        total += _one_row(X, y, i, params, acc, loss)
    grad[:] = acc
    return total


@kernel
def glm_loss_grad_rows(X, y, rows, params, grad, loss):
    """As :func:`glm_loss_grad`, over the rows whose indices are listed in ``rows``."""
    acc = np.zeros_like(grad)
    n = rows.shape[0]
    tail = n - n % 4
    total = 0.0
    for k in range(0, tail, 4):
        total += _four_rows(X, y, rows[k], rows[k + 1], rows[k + 2], rows[k + 3], params, acc, loss)
    for k in range(tail, n):
        total += _one_row(X, y, rows[k], params, acc, loss)
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
