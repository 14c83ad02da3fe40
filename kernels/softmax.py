"""Fused loss-and-gradient kernel for softmax (multinomial) regression over ``k`` classes, dense rows.

Parameters live in one buffer: the weights ``W`` (``d x k``, row-major, so ``W[j, c]`` is
``params[j * k + c]``), then the ``k`` intercepts. Labels are the class numbers ``0 .. k-1``
stored in the label array's float dtype. As in :mod:`mpigd.kernels.glm`, a kernel returns the
*sum* of the per-row loss over its rows and writes the summed gradient.

Rows are taken four at a time: the four rows' logits share each load of a row of ``W`` and the
gradient update adds four scaled rows per load and store of the accumulator. The four rows'
logits live in a small ``4 x k`` workspace allocated once per call, outside the loop.

``rows`` is ``None`` (every row of ``X``) or an int64 array of local row indices (a mini-batch);
Numba compiles the two cases separately and prunes the other branch, so one body serves both.
"""

from __future__ import annotations

import math

import numpy as np

from mpigd.kernels.glm import row_index
from mpigd.kernels.jit import kernel


@kernel
def softmax_delta(z, label):
    """Turn the logits ``z`` (length ``k``) into ``softmax(z) - onehot(label)``; return the log-loss.

    Shifting by the largest logit keeps every ``exp`` at most 1: no overflow for any logits.
    """
    k = z.shape[0]
    top = z[0]
    for c in range(1, k):
        top = max(top, z[c])
    true_logit = z[label]
    total = 0.0
    for c in range(k):
        e = math.exp(z[c] - top)
        z[c] = e
        total += e
    inverse = 1.0 / total
    for c in range(k):
        z[c] *= inverse
    z[label] -= 1.0
    return math.log(total) + top - true_logit


@kernel
def _four_rows(X, y, i0, i1, i2, i3, params, acc, Z):
    d = X.shape[1]
    k = Z.shape[1]
    b = d * k
    for c in range(k):
        v = params[b + c]
        Z[0, c] = v
        Z[1, c] = v
        Z[2, c] = v
        Z[3, c] = v
    for j in range(d):
        x0, x1, x2, x3 = X[i0, j], X[i1, j], X[i2, j], X[i3, j]
        base = j * k
        for c in range(k):
            w = params[base + c]
            Z[0, c] += x0 * w
            Z[1, c] += x1 * w
            Z[2, c] += x2 * w
            Z[3, c] += x3 * w
    loss = (softmax_delta(Z[0], int(y[i0])) + softmax_delta(Z[1], int(y[i1]))
            + softmax_delta(Z[2], int(y[i2])) + softmax_delta(Z[3], int(y[i3])))
    for j in range(d):
        x0, x1, x2, x3 = X[i0, j], X[i1, j], X[i2, j], X[i3, j]
        base = j * k
        for c in range(k):
            acc[base + c] += x0 * Z[0, c] + x1 * Z[1, c] + x2 * Z[2, c] + x3 * Z[3, c]
    for c in range(k):
        acc[b + c] += Z[0, c] + Z[1, c] + Z[2, c] + Z[3, c]
    return loss


@kernel
def _one_row(X, y, i, params, acc, Z):
    d = X.shape[1]
    k = Z.shape[1]
    b = d * k
    z = Z[0]
    for c in range(k):
        z[c] = params[b + c]
    for j in range(d):
        x = X[i, j]
        base = j * k
        for c in range(k):
            z[c] += x * params[base + c]
    loss = softmax_delta(z, int(y[i]))
    for j in range(d):
        x = X[i, j]
        base = j * k
        for c in range(k):
            acc[base + c] += x * z[c]
    for c in range(k):
        acc[b + c] += z[c]
    return loss


@kernel
def softmax_loss_grad(X, y, rows, params, grad, k):
    """Summed log-loss over the rows of ``X`` (all, or those in ``rows``); summed gradient to ``grad``."""
    acc = np.zeros_like(grad)
    Z = np.empty((4, k), dtype=grad.dtype)
    n = X.shape[0] if rows is None else rows.shape[0]
    tail = n - n % 4
    total = 0.0
    for t in range(0, tail, 4):
        total += _four_rows(X, y, row_index(rows, t), row_index(rows, t + 1), row_index(rows, t + 2),
                            row_index(rows, t + 3), params, acc, Z)
    for t in range(tail, n):
        total += _one_row(X, y, row_index(rows, t), params, acc, Z)
    grad[:] = acc
    return total


@kernel
def softmax_logits(X, params, out):
    """The logits ``X @ W + b`` of every row, written to ``out`` (``n x k``)."""
    d = X.shape[1]
    k = out.shape[1]
    b = d * k
    for i in range(X.shape[0]):
        for c in range(k):
            out[i, c] = params[b + c]
        for j in range(d):
            x = X[i, j]
            base = j * k
            for c in range(k):
                out[i, c] += x * params[base + c]
