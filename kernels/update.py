"""The optimizers' updates, one pass over the parameters each (``mpigd.optim`` holds their state).

Each kernel does, element by element and in the same order, what the NumPy expressions it
replaced did, so the parameters keep their bits: ``fastmath`` is off (no fused multiply-add),
and the caller passes each scalar in the type NumPy computed with. A Python float met a float32
array as a float32 (``v *= mu``: pass ``mu`` in the array's dtype), a NumPy float64 made the
operation float64 and rounded the result into the array (Adam's step size and epsilon: pass
float64). Where NumPy rounded an intermediate into an array, the kernel stores it into one too.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.jit import kernel


@kernel(fastmath=False)
def sgd_step(params, grad, lr):
    """``params -= lr * grad``."""
    for i in range(params.shape[0]):
        params[i] -= grad[i] * lr


@kernel(fastmath=False)
def momentum_step(params, grad, velocity, momentum, lr, nesterov):
    """Heavy ball: ``v = momentum * v + grad``, then ``params -= lr * v``; with ``nesterov``,
    ``params -= lr * (momentum * v + grad)`` with the new ``v``."""
    for i in range(params.shape[0]):
        v = velocity[i] * momentum
        v += grad[i]
        velocity[i] = v
        direction = v * momentum + grad[i] if nesterov else v
        params[i] -= direction * lr


@kernel(fastmath=False)
def adam_step(params, grad, m, v, one_minus_beta1, one_minus_beta2, beta1, beta2, rate, epsilon, denominator):
    """Adam with its bias corrections folded into ``rate`` and ``epsilon`` (float64):
    ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g²``,
    ``params -= rate * m / (sqrt(v) + epsilon)``; ``denominator`` is scratch of the dtype."""
    for i in range(params.shape[0]):
        g = grad[i]
        m[i] = m[i] * beta1 + g * one_minus_beta1
        v[i] = v[i] * beta2 + (g * g) * one_minus_beta2
        denominator[i] = np.sqrt(v[i]) + epsilon  # computed in float64, rounded to the dtype
        step = m[i] / denominator[i]
        denominator[i] = step * rate  # the same rounding of a float64 product
        params[i] -= denominator[i]


@kernel(fastmath=False)
def local_sgd_start(copy, drift, params, grad, scale, l2, n_penalized, lr):
    """Local SGD's first move of a round: ``copy = params``, ``drift = 0``, then
    ``copy -= lr * (scale * grad + l2 * copy)``, the L2 term on the first ``n_penalized`` entries
    only (and not added at all when ``l2`` is 0, as NumPy skipped it)."""
    for i in range(copy.shape[0]):
        drift[i] = 0
        copy[i] = params[i]
        step = grad[i] * scale
        if l2 != 0 and i < n_penalized:
            step = step + l2 * copy[i]
        copy[i] -= step * lr


@kernel(fastmath=False)
def local_sgd_step(copy, drift, params, accumulated, step_grad, factor, move, scale, l2, n_penalized, lr):
    """One later local step of a round, after its gradient ``step_grad`` was computed at ``copy``:
    ``accumulated += factor * step_grad``, ``drift += params``, ``drift -= copy``, then, when
    ``move``, the move of :func:`local_sgd_start` with ``step_grad``."""
    for i in range(copy.shape[0]):
        g = step_grad[i]
        accumulated[i] += g * factor
        d = drift[i] + params[i]
        drift[i] = d - copy[i]
        if move:
            step = g * scale
            if l2 != 0 and i < n_penalized:
                step = step + l2 * copy[i]
            copy[i] -= step * lr
