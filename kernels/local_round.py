"""Local SGD's local steps for a dense linear model, a whole round in one call.

:class:`mpigd.algorithms.local_sgd.LocalSGD` takes a round's steps 1 to ``length - 1`` as a
loop of two kernel calls (the model's gradient, then :func:`~mpigd.kernels.update.local_sgd_step`)
with Python between them; at a few rows a step that Python costs more than the arithmetic. For
linear and logistic regression on dense rows this kernel runs the same loop itself, calling the
same kernels in the same order, so the parameters keep their bits.

Each step's per-step scalars (the factor and the scale of its batch) are rounded into the buffer's
dtype through ``scalars``, as NumPy rounded a Python float meeting an array of that dtype, and each
step's loss joins the round's in the last entry of ``buffer`` as it did there: rounded into the
dtype, then added in the dtype.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.glm import BLOCK_ROWS, glm_loss_grad_rows_into
from mpigd.kernels.jit import kernel
from mpigd.kernels.update import local_sgd_start, local_sgd_step


@kernel(fastmath=False)
def glm_local_steps(X, y, order, bounds, batch_rows, first, length, params, copy, drift, buffer, step_grad,
                    size, l2, n_penalized, lr, loss, largest, scalars):
    """Steps 1 to ``length - 1`` of the round that starts at step ``first`` of the epoch.

    ``buffer`` is ``[accumulated gradient..., loss]`` with step 0's gradient and loss in it;
    ``order`` is this rank's permutation of its rows, step ``s`` takes
    ``order[bounds[s]:bounds[s + 1]]``, and ``batch_rows[s]`` is its global batch. ``size`` is the
    rank count; ``l2`` and ``lr`` are in the buffer's dtype; a step's loss beyond ``largest`` in
    absolute value (or NaN) counts as Inf. ``scalars`` is scratch: two entries of the dtype.
    """
    accumulated = buffer[:-1]
    first_rows = batch_rows[first]
    scalars[0] = size / first_rows
    local_sgd_start(copy, drift, params, accumulated, scalars[0], l2, n_penalized, lr)
    last = buffer.shape[0] - 1
    acc = np.empty_like(step_grad)  # the gradient kernel's scratch, once for the round
    blocks = np.empty(2 * BLOCK_ROWS)
    for h in range(1, length):
        step = first + h
        value = glm_loss_grad_rows_into(X, y, order[bounds[step]:bounds[step + 1]], copy, step_grad, loss, acc, blocks)
        if not abs(value) <= largest:
            value = np.inf
        factor = first_rows / batch_rows[step]
        scalars[0] = factor
        scalars[1] = size / batch_rows[step]
        local_sgd_step(copy, drift, params, accumulated, step_grad, scalars[0], h < length - 1, scalars[1], l2,
                       n_penalized, lr)
        scalars[0] = factor * value
        buffer[last] = buffer[last] + scalars[0]
