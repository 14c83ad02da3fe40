"""Fused forward-and-backward kernel of a small multilayer perceptron over blocks of dense rows.

``widths`` lists the layer widths ``[d, h_1, ..., h_m, out]``: ``L = len(widths) - 1`` affine
layers, the hidden ones followed by the activation (:data:`RELU` or :data:`TANH`), the last one by
the head: :data:`SOFTMAX_HEAD` (log-loss over ``out`` classes) or :data:`SQUARED_HEAD` (``out``
is 1, loss ½(z − y)²). The parameter buffer holds every weight matrix first (``W_l`` is
``widths[l] x widths[l+1]``, row-major), then every bias vector, so the weights form one prefix
that regularisation covers.

Rows are processed in blocks of :data:`BLOCK` through a workspace allocated once per call: the
activations of every layer (stored after the non-linearity; both derivatives are functions of
the output: relu' = [a > 0], tanh' = 1 − a²) and the back-propagated deltas. The backward pass
fuses the weight gradient and the next delta in one sweep over each weight row. The gradient is
summed into a private accumulator, as in the other kernels.
"""

from __future__ import annotations

import math

import numpy as np

from mpigd.kernels.jit import kernel
from mpigd.kernels.softmax import row_index, softmax_delta

RELU = 0
TANH = 1
SQUARED_HEAD = 0
SOFTMAX_HEAD = 1
BLOCK = 32


@kernel
def mlp_layout(widths):
    """Offsets of each layer's weights, biases (in the parameter buffer) and activations (in a row
    of the workspace), and the workspace row length."""
    layers = widths.shape[0] - 1
    w_off = np.zeros(layers, dtype=np.int64)
    b_off = np.zeros(layers, dtype=np.int64)
    a_off = np.zeros(layers + 1, dtype=np.int64)
    n_weights = 0
    for l in range(layers):
        w_off[l] = n_weights
        n_weights += widths[l] * widths[l + 1]
    position = n_weights
    for l in range(layers):
        b_off[l] = position
        position += widths[l + 1]
    for l in range(layers):
        a_off[l + 1] = a_off[l] + widths[l]
    return w_off, b_off, a_off, a_off[layers] + widths[layers]


@kernel
def _forward_row(X, i, params, widths, w_off, b_off, a_off, activation, act, r):
    """Fill row ``r`` of ``act`` with every layer's activations for row ``i`` of ``X``."""
    layers = widths.shape[0] - 1
    for j in range(X.shape[1]):
        act[r, j] = X[i, j]
    for l in range(layers):
        p, q = widths[l], widths[l + 1]
        src, dst = a_off[l], a_off[l + 1]
        for c in range(q):
            act[r, dst + c] = params[b_off[l] + c]
        for j in range(p):
            a = act[r, src + j]
            base = w_off[l] + j * q
            for c in range(q):
                act[r, dst + c] += a * params[base + c]
        if l < layers - 1:
            for c in range(q):
                v = act[r, dst + c]
                act[r, dst + c] = max(v, 0.0) if activation == RELU else math.tanh(v)


@kernel
def mlp_loss_grad(X, y, rows, params, grad, widths, activation, head):
    """Summed loss of the network over the rows of ``X`` (all, or those in ``rows``); the summed
    gradient is written to ``grad``."""
    w_off, b_off, a_off, width = mlp_layout(widths)
    layers = widths.shape[0] - 1
    acc = np.zeros_like(grad)
    act = np.empty((BLOCK, width), dtype=grad.dtype)
    delta = np.empty((BLOCK, width), dtype=grad.dtype)
    n = X.shape[0] if rows is None else rows.shape[0]
    out, q_out = a_off[layers], widths[layers]
    total = 0.0
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for r in range(m):
            i = row_index(rows, start + r)
            _forward_row(X, i, params, widths, w_off, b_off, a_off, activation, act, r)
            for c in range(q_out):
                delta[r, out + c] = act[r, out + c]
            if head == SOFTMAX_HEAD:
                total += softmax_delta(delta[r, out : out + q_out], int(y[i]))
            else:
                residual = act[r, out] - y[i]
                delta[r, out] = residual
                total += 0.5 * residual * residual
        for l in range(layers - 1, -1, -1):
            p, q = widths[l], widths[l + 1]
            src, dst = a_off[l], a_off[l + 1]
            for r in range(m):
                for j in range(p):
                    a = act[r, src + j]
                    base = w_off[l] + j * q
                    if l == 0:  # the inputs need no delta: the weight gradient alone
                        for c in range(q):
                            acc[base + c] += a * delta[r, dst + c]
                        continue
                    back = 0.0
                    for c in range(q):
                        g = delta[r, dst + c]
                        acc[base + c] += a * g
                        back += params[base + c] * g
                    slope = (1.0 if a > 0 else 0.0) if activation == RELU else 1.0 - a * a
                    delta[r, src + j] = back * slope
                for c in range(q):
                    acc[b_off[l] + c] += delta[r, dst + c]
    grad[:] = acc
    return total


@kernel
def mlp_outputs(X, params, widths, activation, out):
    """The network's outputs (logits, or the regression value) for every row, written to ``out``."""
    w_off, b_off, a_off, width = mlp_layout(widths)
    layers = widths.shape[0] - 1
    act = np.empty((1, width), dtype=params.dtype)
    first = a_off[layers]
    for i in range(X.shape[0]):
        _forward_row(X, i, params, widths, w_off, b_off, a_off, activation, act, 0)
        for c in range(out.shape[1]):
            out[i, c] = act[0, first + c]
