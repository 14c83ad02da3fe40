"""Synchronous mini-batch SGD on one rank, many steps in one call.

On one rank :class:`mpigd.algorithms.sgd.MiniBatchSGD` takes a step as five kernel calls with
Python between them (the model's gradient, the finiteness test, the allreduce that has nothing to
sum, :func:`~mpigd.kernels.finish.mean_with_l2`, the optimizer's update): about 8 us, against
scikit-learn's 0.3 us a row. These kernels run the same steps themselves, calling the same kernels
in the same order with the same scalars, so the parameters and the objective keep their bits:
:func:`glm_sync_steps` for linear and logistic regression, :func:`mlp_sync_steps` for the MLP and
softmax regression (the MLP kernel without hidden layers), and on CSR rows
:func:`csr_glm_sync_steps` and :func:`csr_softmax_sync_steps`.

Each takes steps ``first`` to ``first + length - 1`` of the epoch: step ``s`` takes this rank's
rows ``order[bounds[s]:bounds[s + 1]]`` of a global batch of ``batch_rows[s]``, at the learning
rate ``rates[s - first]`` (the schedule's, rounded into the dtype as the optimizer rounds it).
``rule`` is :data:`PLAIN` (``sgd_step``), :data:`MOMENTUM` or :data:`NESTEROV` (``momentum_step``
with the velocity ``state[0]`` and ``coefficients[0]``), or :data:`ADAM` (``adam_step`` with the
moments ``state[0]``, ``state[1]``, the scratch ``state[2]``, ``coefficients[1:5]`` = 1 - beta1,
1 - beta2, beta1, beta2, and step ``s``'s bias-corrected rate and epsilon, float64, in
``adam[s - first]``). ``l2`` is in the buffer's dtype and ``half_l2`` in float64,
as :meth:`mpigd.algorithms.objective.GlobalGradient.reduce` passes them; ``l1`` (float64) adds
``l1·‖w‖₁`` to the objective, and each step ends with the proximal step of
``thresholds[s - first]`` (``rate·l1`` in float64, as :class:`mpigd.algorithms.update.Update`
computes it; 0: none); a ``clip`` above 0 scales each step's mean gradient to a norm of at most
``clip``. ``total`` is the epoch's running sum of step objectives, continued in float64 step by
step as the caller's loop added them.

They return ``(steps taken, total, status)``: status :data:`DONE`, or :data:`LOCAL_NONFINITE` /
:data:`NONFINITE` for the step that stopped them (its gradient not finite before the reduction,
or after it), with that step not applied.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.finish import all_finite, clip_to_norm, mean_with_l2, sum_of_abs
from mpigd.kernels.glm import BLOCK_ROWS, glm_loss_grad_rows_into
from mpigd.kernels.jit import kernel
from mpigd.kernels.mlp import mlp_loss_grad_into, mlp_workspace
from mpigd.kernels.prox import soft_threshold
from mpigd.kernels.sparse import csr_glm_loss_grad_into, csr_softmax_loss_grad_into
from mpigd.kernels.update import adam_step, momentum_step, sgd_step

PLAIN, MOMENTUM, NESTEROV, ADAM = 0, 1, 2, 3
DONE, LOCAL_NONFINITE, NONFINITE = 0, 1, 2


@kernel(inline="always", fastmath=False)
def _finish_step(params, buffer, value, rows, h, rates, adam, l2, half_l2, l1, thresholds, clip, n_penalized, largest,
                 rule, state, coefficients, scalars):
    """What a step does once its gradient is in ``buffer[:-1]`` and its summed loss is ``value``:
    returns ``(status, objective)``."""
    if not abs(value) <= largest:
        value = np.inf
    last = buffer.shape[0] - 1
    buffer[last] = value
    if not all_finite(buffer):
        return LOCAL_NONFINITE, 0.0
    scalars[0] = rows
    objective = mean_with_l2(buffer, scalars[0], params, n_penalized, l2, half_l2)
    if l1 != 0:
        objective += l1 * sum_of_abs(params, n_penalized)
    if not np.isfinite(objective):
        return NONFINITE, 0.0
    if clip > 0:
        clip_to_norm(buffer, last, clip, scalars)
    if rule == PLAIN:
        sgd_step(params, buffer[:last], rates[h])
    elif rule == ADAM:
        adam_step(params, buffer[:last], state[0], state[1], coefficients[1], coefficients[2], coefficients[3],
                  coefficients[4], adam[h, 0], adam[h, 1], state[2])
    else:
        momentum_step(params, buffer[:last], state[0], coefficients[0], rates[h], rule == NESTEROV)
    if thresholds[h] > 0.0:
        soft_threshold(params[:n_penalized], thresholds[h])
    return DONE, objective


@kernel(fastmath=False)
def glm_sync_steps(X, y, order, bounds, batch_rows, first, length, params, buffer, rates, l2, half_l2,
                   l1, thresholds, clip, n_penalized, largest, rule, state, coefficients, adam, total, scalars, loss):
    """Steps ``first`` to ``first + length - 1`` (see the module); ``loss`` is the GLM's."""
    grad = buffer[:-1]
    acc = np.empty_like(grad)
    blocks = np.empty(2 * BLOCK_ROWS)
    for h in range(length):
        step = first + h
        value = glm_loss_grad_rows_into(X, y, order[bounds[step]:bounds[step + 1]], params, grad, loss, acc, blocks)
        status, objective = _finish_step(params, buffer, value, batch_rows[step], h, rates, adam, l2, half_l2, l1,
                                         thresholds, clip, n_penalized, largest, rule, state, coefficients,
                                         scalars)
        if status != DONE:
            return h, total, status
        total += objective
    return length, total, DONE


@kernel(fastmath=False)
def mlp_sync_steps(X, y, order, bounds, batch_rows, first, length, params, buffer, rates, l2, half_l2,
                   l1, thresholds, clip, n_penalized, largest, rule, state, coefficients, adam, total, scalars, widths,
                   activation, head):
    """As :func:`glm_sync_steps`, for the network of :func:`~mpigd.kernels.mlp.mlp_loss_grad`."""
    grad = buffer[:-1]
    workspace = mlp_workspace(widths, grad)
    for h in range(length):
        step = first + h
        value = mlp_loss_grad_into(X, y, order[bounds[step]:bounds[step + 1]], params, grad, widths, activation,
                                   head, workspace)
        status, objective = _finish_step(params, buffer, value, batch_rows[step], h, rates, adam, l2, half_l2, l1,
                                         thresholds, clip, n_penalized, largest, rule, state, coefficients,
                                         scalars)
        if status != DONE:
            return h, total, status
        total += objective
    return length, total, DONE


@kernel(fastmath=False)
def csr_glm_sync_steps(indptr, indices, data, y, order, bounds, batch_rows, first, length, params, buffer, rates,
                       l2, half_l2, l1, thresholds, clip, n_penalized, largest, rule, state, coefficients, adam, total,
                       scalars, loss):
    """As :func:`glm_sync_steps`, on CSR rows."""
    grad = buffer[:-1]
    acc = np.empty_like(grad)
    blocks = np.empty(2 * BLOCK_ROWS)
    for h in range(length):
        step = first + h
        value = csr_glm_loss_grad_into(indptr, indices, data, y, order[bounds[step]:bounds[step + 1]], params, grad,
                                       loss, acc, blocks)
        status, objective = _finish_step(params, buffer, value, batch_rows[step], h, rates, adam, l2, half_l2, l1,
                                         thresholds, clip, n_penalized, largest, rule, state, coefficients,
                                         scalars)
        if status != DONE:
            return h, total, status
        total += objective
    return length, total, DONE


@kernel(fastmath=False)
def csr_softmax_sync_steps(indptr, indices, data, y, order, bounds, batch_rows, first, length, params, buffer, rates,
                           l2, half_l2, l1, thresholds, clip, n_penalized, largest, rule, state, coefficients, adam,
                           total, scalars, k):
    """As :func:`glm_sync_steps`, for softmax regression of ``k`` classes on CSR rows."""
    grad = buffer[:-1]
    acc = np.empty_like(grad)
    z = np.empty(k, dtype=grad.dtype)
    for h in range(length):
        step = first + h
        value = csr_softmax_loss_grad_into(indptr, indices, data, y, order[bounds[step]:bounds[step + 1]], params,
                                           grad, k, acc, z)
        status, objective = _finish_step(params, buffer, value, batch_rows[step], h, rates, adam, l2, half_l2, l1,
                                         thresholds, clip, n_penalized, largest, rule, state, coefficients,
                                         scalars)
        if status != DONE:
            return h, total, status
        total += objective
    return length, total, DONE
