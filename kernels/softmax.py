"""Softmax (multinomial) regression over ``k`` classes, dense rows: the per-row log-loss and the logits.

Parameters live in one buffer: the weights ``W`` (``d x k``, row-major, so ``W[j, c]`` is
``params[j * k + c]``), then the ``k`` intercepts. Labels are the class numbers ``0 .. k-1``
stored in the label array's float dtype. The loss-and-gradient kernel over dense rows is
:func:`mpigd.kernels.mlp.softmax_loss_grad` (the network without hidden layers: block matrix
products); :func:`softmax_delta` serves it, the MLP's head and the CSR kernel.
"""

from __future__ import annotations

import math

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
