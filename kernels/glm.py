"""Fused loss-and-gradient kernels for generalised linear models: squared loss and log-loss.

Parameters live in one buffer ``params`` of length ``d + 1``: the weights, then the intercept.
The gradient buffer ``grad`` has the same layout. A kernel makes one pass over its rows, reading
each row once (the dot product, then the gradient update while the row is still in cache), and
returns the *sum* over its rows of the per-row loss; the gradient it writes is the summed
gradient too. Averaging and regularisation happen after the sums are reduced across ranks.
"""

from __future__ import annotations

import math

from mpigd.kernels.jit import kernel


@kernel
def _zero(out):
    for j in range(out.shape[0]):
        out[j] = 0


@kernel
def _margin(X, i, params):
    d = X.shape[1]
    z = params[d]
    for j in range(d):
        z += X[i, j] * params[j]
    return z


@kernel
def _add_scaled_row(X, i, scale, grad):
    d = X.shape[1]
    for j in range(d):
        grad[j] += scale * X[i, j]
    grad[d] += scale


@kernel
def _squared_row(X, y, i, params, grad):
    residual = _margin(X, i, params) - y[i]
    _add_scaled_row(X, i, residual, grad)
    return 0.5 * residual * residual


@kernel
def _log_loss(z, label):
    """Stable ``log(1 + exp(z)) - label * z``: no overflow for any margin."""
    return max(z, 0.0) - label * z + math.log1p(math.exp(-abs(z)))


@kernel
def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@kernel
def _logistic_row(X, y, i, params, grad):
    z = _margin(X, i, params)
    _add_scaled_row(X, i, _sigmoid(z) - y[i], grad)
    return _log_loss(z, y[i])


@kernel
def squared_loss_grad(X, y, params, grad):
    """Sum of ½(x·w + b − y)² over all rows of ``X``; the summed gradient goes to ``grad``."""
    _zero(grad)
    loss = 0.0
    for i in range(X.shape[0]):
        loss += _squared_row(X, y, i, params, grad)
    return loss


@kernel
def squared_loss_grad_rows(X, y, rows, params, grad):
    """As :func:`squared_loss_grad`, over the rows listed in ``rows`` only."""
    _zero(grad)
    loss = 0.0
    for i in rows:
        loss += _squared_row(X, y, i, params, grad)
    return loss


@kernel
def logistic_loss_grad(X, y, params, grad):
    """Sum of the log-loss over all rows (labels 0 or 1); the summed gradient goes to ``grad``."""
    _zero(grad)
    loss = 0.0
    for i in range(X.shape[0]):
        loss += _logistic_row(X, y, i, params, grad)
    return loss


@kernel
def logistic_loss_grad_rows(X, y, rows, params, grad):
    """As :func:`logistic_loss_grad`, over the rows listed in ``rows`` only."""
    _zero(grad)
    loss = 0.0
    for i in rows:
        loss += _logistic_row(X, y, i, params, grad)
    return loss


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
        stats[0] += _log_loss(z, y[i])
        stats[1] += 1.0 if (z > 0) == (y[i] > 0.5) else 0.0
