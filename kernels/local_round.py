"""Local SGD's local steps, a whole round in one call.

:class:`mpigd.algorithms.local_sgd.LocalSGD` takes a round's steps 1 to ``length - 1`` as a
loop of two kernel calls (the model's gradient, then :func:`~mpigd.kernels.update.local_sgd_step`)
with Python between them; at a few rows a step that Python costs more than the arithmetic. These
kernels run the same loop themselves, calling the same kernels in the same order, so the
parameters keep their bits: :func:`glm_local_steps` for linear and logistic regression,
:func:`mlp_local_steps` for the MLP and softmax regression (the MLP kernel without hidden layers),
and on CSR rows :func:`csr_glm_local_steps` and :func:`csr_softmax_local_steps`.

Each step's scalars (the factor and the scale of its batch) are rounded into the buffer's dtype
through ``scalars``, as NumPy rounded a Python float meeting an array of that dtype, and each
step's loss joins the round's in the last entry of ``buffer`` as it did there: rounded into the
dtype, then added in the dtype. The gradient kernels work in scratch made once per round.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.glm import BLOCK_ROWS, glm_loss_grad_rows_into
from mpigd.kernels.jit import kernel
from mpigd.kernels.mlp import mlp_loss_grad_into, mlp_workspace
from mpigd.kernels.sparse import csr_glm_loss_grad_into, csr_softmax_loss_grad_into
from mpigd.kernels.update import local_sgd_start, local_sgd_step


@kernel(inline="always", fastmath=False)
def _start(params, copy, drift, buffer, batch_rows, first, size, l2, n_penalized, lr, scalars):
    """The round's first move, from step 0's gradient in ``buffer``; returns step 0's global batch."""
    first_rows = batch_rows[first]
    scalars[0] = size / first_rows
    local_sgd_start(copy, drift, params, buffer[:-1], scalars[0], l2, n_penalized, lr)
    return first_rows


@kernel(inline="always", fastmath=False)
def _after_gradient(params, copy, drift, buffer, step_grad, value, first_rows, rows, move, size, l2, n_penalized,
                    lr, largest, scalars):
    """What a local step does once its gradient ``step_grad`` and loss ``value`` are computed."""
    if not abs(value) <= largest:
        value = np.inf
    factor = first_rows / rows
    scalars[0] = factor
    scalars[1] = size / rows
    local_sgd_step(copy, drift, params, buffer[:-1], step_grad, scalars[0], move, scalars[1], l2, n_penalized, lr)
    scalars[0] = factor * value
    last = buffer.shape[0] - 1
    buffer[last] = buffer[last] + scalars[0]


@kernel(fastmath=False)
def glm_local_steps(X, y, order, bounds, batch_rows, first, length, params, copy, drift, buffer, step_grad,
                    size, l2, n_penalized, lr, largest, scalars, loss):
    """Steps 1 to ``length - 1`` of the round that starts at step ``first`` of the epoch.

    ``buffer`` is ``[accumulated gradient..., loss]`` with step 0's gradient and loss in it;
    ``order`` is this rank's permutation of its rows, step ``s`` takes
    ``order[bounds[s]:bounds[s + 1]]``, and ``batch_rows[s]`` is its global batch. ``size`` is the
    rank count; ``l2`` and ``lr`` are in the buffer's dtype; a step's loss beyond ``largest`` in
    absolute value (or NaN) counts as Inf. ``scalars`` is scratch: two entries of the dtype.
    ``loss`` is the GLM's (:data:`~mpigd.kernels.glm.SQUARED` or :data:`~mpigd.kernels.glm.LOGISTIC`).
    """
    first_rows = _start(params, copy, drift, buffer, batch_rows, first, size, l2, n_penalized, lr, scalars)
    acc = np.empty_like(step_grad)
    blocks = np.empty(2 * BLOCK_ROWS)
    for h in range(1, length):
        step = first + h
        value = glm_loss_grad_rows_into(X, y, order[bounds[step]:bounds[step + 1]], copy, step_grad, loss, acc,
                                        blocks)
        _after_gradient(params, copy, drift, buffer, step_grad, value, first_rows, batch_rows[step], h < length - 1,
                        size, l2, n_penalized, lr, largest, scalars)


@kernel(fastmath=False)
def mlp_local_steps(X, y, order, bounds, batch_rows, first, length, params, copy, drift, buffer, step_grad,
                    size, l2, n_penalized, lr, largest, scalars, widths, activation, head):
    """As :func:`glm_local_steps`, for the network of :func:`~mpigd.kernels.mlp.mlp_loss_grad`
    (``widths``, ``activation``, ``head``)."""
    first_rows = _start(params, copy, drift, buffer, batch_rows, first, size, l2, n_penalized, lr, scalars)
    workspace = mlp_workspace(widths, step_grad)
    for h in range(1, length):
        step = first + h
        value = mlp_loss_grad_into(X, y, order[bounds[step]:bounds[step + 1]], copy, step_grad, widths, activation,
                                   head, workspace)
        _after_gradient(params, copy, drift, buffer, step_grad, value, first_rows, batch_rows[step], h < length - 1,
                        size, l2, n_penalized, lr, largest, scalars)


@kernel(fastmath=False)
def csr_glm_local_steps(indptr, indices, data, y, order, bounds, batch_rows, first, length, params, copy, drift,
                        buffer, step_grad, size, l2, n_penalized, lr, largest, scalars, loss):
    """As :func:`glm_local_steps`, on CSR rows (:func:`~mpigd.kernels.sparse.csr_glm_loss_grad`)."""
    first_rows = _start(params, copy, drift, buffer, batch_rows, first, size, l2, n_penalized, lr, scalars)
    acc = np.empty_like(step_grad)
    blocks = np.empty(2 * BLOCK_ROWS)
    for h in range(1, length):
        step = first + h
        value = csr_glm_loss_grad_into(indptr, indices, data, y, order[bounds[step]:bounds[step + 1]], copy,
                                       step_grad, loss, acc, blocks)
        _after_gradient(params, copy, drift, buffer, step_grad, value, first_rows, batch_rows[step], h < length - 1,
                        size, l2, n_penalized, lr, largest, scalars)


@kernel(fastmath=False)
def csr_softmax_local_steps(indptr, indices, data, y, order, bounds, batch_rows, first, length, params, copy, drift,
                            buffer, step_grad, size, l2, n_penalized, lr, largest, scalars, k):
    """As :func:`glm_local_steps`, for softmax regression of ``k`` classes on CSR rows
    (:func:`~mpigd.kernels.sparse.csr_softmax_loss_grad`)."""
    first_rows = _start(params, copy, drift, buffer, batch_rows, first, size, l2, n_penalized, lr, scalars)
    acc = np.empty_like(step_grad)
    z = np.empty(k, dtype=step_grad.dtype)
    for h in range(1, length):
        step = first + h
        value = csr_softmax_loss_grad_into(indptr, indices, data, y, order[bounds[step]:bounds[step + 1]], copy,
                                           step_grad, k, acc, z)
        _after_gradient(params, copy, drift, buffer, step_grad, value, first_rows, batch_rows[step], h < length - 1,
                        size, l2, n_penalized, lr, largest, scalars)
