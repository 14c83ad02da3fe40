"""Forward-and-backward kernel of a small multilayer perceptron over blocks of dense rows.

``widths`` lists the layer widths ``[d, h_1, ..., h_m, out]``: ``L = len(widths) - 1`` affine
layers, the hidden ones followed by the activation (:data:`RELU` or :data:`TANH`), the last one by
the head: :data:`SOFTMAX_HEAD` (log-loss over ``out`` classes) or :data:`SQUARED_HEAD` (``out``
is 1, loss ½(z − y)²). The parameter buffer holds every weight matrix first (``W_l`` is
``widths[l] x widths[l+1]``, row-major), then every bias vector, so the weights form one prefix
that regularisation covers.

Rows go through in blocks of :data:`BLOCK`, each layer as one matrix product over the block
(``np.dot``, which Numba hands to BLAS): the work is GEMM-shaped and compute-bound, and a
register-tiled GEMM does it several times faster than loops over single rows. A workspace made
once per call holds, for the current block, every layer's activations (stored after the
non-linearity; both derivatives are functions of the output: relu' = [a > 0], tanh' = 1 − a²),
the back-propagated deltas and one weight gradient; nothing is allocated per block. The block is
small enough for the workspace to stay in cache at the widths this model is meant for.
"""

from __future__ import annotations

import math

import numpy as np

from mpigd.kernels.jit import kernel
from mpigd.kernels.glm import row_index
from mpigd.kernels.softmax import softmax_delta

RELU = 0
TANH = 1
SQUARED_HEAD = 0
SOFTMAX_HEAD = 1
# Rows per block: enough for BLAS to run at speed, few enough for the workspace to stay in cache.
BLOCK = 256


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
def _block(flat, offset, m, width):
    """Rows ``0..m-1`` of a ``BLOCK x width`` matrix stored at ``BLOCK * offset`` in ``flat``."""
    start = BLOCK * offset
    return flat[start : start + m * width].reshape((m, width))


@kernel
def _forward_block(params, widths, w_off, b_off, a_off, activation, act, m):
    """Given the inputs in layer 0 of ``act``, fill every later layer for a block of ``m`` rows."""
    layers = widths.shape[0] - 1
    for l in range(layers):
        p, q = widths[l], widths[l + 1]
        inputs, outputs = _block(act, a_off[l], m, p), _block(act, a_off[l + 1], m, q)
        np.dot(inputs, params[w_off[l] : w_off[l] + p * q].reshape((p, q)), outputs)
        bias = params[b_off[l] : b_off[l] + q]
        hidden = l < layers - 1
        for r in range(m):
            for c in range(q):
                v = outputs[r, c] + bias[c]
                if hidden:
                    v = max(v, 0.0) if activation == RELU else math.tanh(v)
                outputs[r, c] = v


@kernel
def _load_block(X, rows, start, m, inputs):
    """Copy the ``m`` rows of ``X`` from position ``start`` (of all rows, or of ``rows``)."""
    for r in range(m):
        i = row_index(rows, start + r)
        for j in range(X.shape[1]):
            inputs[r, j] = X[i, j]


@kernel
def mlp_workspace(widths, grad):
    """What :func:`mlp_loss_grad_into` works in: the layout of :func:`mlp_layout`, an accumulator
    shaped as ``grad``, a block's activations and deltas, and one weight gradient."""
    w_off, b_off, a_off, width = mlp_layout(widths)
    largest = 0
    for l in range(widths.shape[0] - 1):
        largest = max(largest, widths[l] * widths[l + 1])
    acc = np.empty_like(grad)
    act = np.empty(BLOCK * width, dtype=grad.dtype)
    delta = np.empty(BLOCK * width, dtype=grad.dtype)
    weight_grad = np.empty(largest, dtype=grad.dtype)
    return w_off, b_off, a_off, acc, act, delta, weight_grad


@kernel
def mlp_loss_grad(X, y, rows, params, grad, widths, activation, head):
    """Summed loss of the network over the rows of ``X`` (all, or those in ``rows``); the summed
    gradient is written to ``grad``."""
    return mlp_loss_grad_into(X, y, rows, params, grad, widths, activation, head, mlp_workspace(widths, grad))


@kernel
def mlp_loss_grad_into(X, y, rows, params, grad, widths, activation, head, workspace):
    """As :func:`mlp_loss_grad`, in the caller's ``workspace`` (:func:`mlp_workspace`): for a caller
    that takes many steps in one call and should not allocate in its loop. Not inlined: inlined, its
    arithmetic would take the caller's fastmath flags (local_round.py has them off) and its bits
    could differ from :func:`mlp_loss_grad`'s."""
    w_off, b_off, a_off, acc, act, delta, weight_grad = workspace
    acc[:] = 0
    layers = widths.shape[0] - 1
    n = X.shape[0] if rows is None else rows.shape[0]
    q_out = widths[layers]
    total = 0.0
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        _load_block(X, rows, start, m, _block(act, 0, m, widths[0]))
        _forward_block(params, widths, w_off, b_off, a_off, activation, act, m)
        outputs, out_delta = _block(act, a_off[layers], m, q_out), _block(delta, a_off[layers], m, q_out)
        for r in range(m):
            i = row_index(rows, start + r)
            for c in range(q_out):
                out_delta[r, c] = outputs[r, c]
            if head == SOFTMAX_HEAD:
                total += softmax_delta(out_delta[r], int(y[i]))
            else:
                residual = outputs[r, 0] - y[i]
                out_delta[r, 0] = residual
                total += 0.5 * residual * residual
        for l in range(layers - 1, -1, -1):
            p, q = widths[l], widths[l + 1]
            inputs, below = _block(act, a_off[l], m, p), _block(delta, a_off[l + 1], m, q)
            gradient = weight_grad[: p * q].reshape((p, q))
            np.dot(inputs.T, below, gradient)
            into = acc[w_off[l] : w_off[l] + p * q]
            flat_gradient = weight_grad[: p * q]
            for k in range(p * q):
                into[k] += flat_gradient[k]
            bias_into = acc[b_off[l] : b_off[l] + q]
            for r in range(m):
                for c in range(q):
                    bias_into[c] += below[r, c]
            if l == 0:
                break  # the inputs need no delta
            back = _block(delta, a_off[l], m, p)
            np.dot(below, params[w_off[l] : w_off[l] + p * q].reshape((p, q)).T, back)
            for r in range(m):
                for j in range(p):
                    a = inputs[r, j]
                    back[r, j] *= (1.0 if a > 0 else 0.0) if activation == RELU else 1.0 - a * a
    grad[:] = acc
    return total


@kernel
def mlp_outputs(X, params, widths, activation, out):
    """The network's outputs (logits, or the regression value) for every row, written to ``out``."""
    w_off, b_off, a_off, width = mlp_layout(widths)
    layers = widths.shape[0] - 1
    act = np.empty(BLOCK * width, dtype=params.dtype)
    q_out = widths[layers]
    for start in range(0, X.shape[0], BLOCK):
        m = min(BLOCK, X.shape[0] - start)
        _load_block(X, None, start, m, _block(act, 0, m, widths[0]))
        _forward_block(params, widths, w_off, b_off, a_off, activation, act, m)
        outputs = _block(act, a_off[layers], m, q_out)
        for r in range(m):
            for c in range(q_out):
                out[start + r, c] = outputs[r, c]


@kernel
def softmax_loss_grad(X, y, rows, params, grad, k):
    """Softmax regression's summed log-loss over the rows of ``X`` (all, or those in ``rows``) and
    summed gradient: the network without hidden layers, whose parameters are laid out as softmax
    regression's (``W``, ``d x k`` row-major, then ``b``). Its block matrix products ran 1.2-4.9x
    faster than a kernel taking four rows at a time (benchmarks/RESULTS.md, *Softmax through the
    MLP kernel*)."""
    widths = np.array([X.shape[1], k], dtype=np.int64)
    return mlp_loss_grad(X, y, rows, params, grad, widths, RELU, SOFTMAX_HEAD)
